"""Login protection for the app when it runs with ``--auth``: a failed-login limiter and a guard for open routes.

Gradio's own login (``auth=[(user, password), ...]``) answers every wrong password at once and without limit,
and leaves a few ``/gradio_api`` routes open to anyone. ``LoginGuardMiddleware`` is a plain ASGI middleware
installed through ``launch(app_kwargs={"middleware": [...]})`` (Gradio hands ``app_kwargs`` to the FastAPI
constructor), only when the app has a login; ``guarded_launch_kwargs(auth)`` builds that wiring for ``app.py``
and the tests alike. It does two things:

1. **Failed logins are limited** per user name and per client address (``LoginRateLimiter``). After
   ``max_failures`` (5) failures within ``window_s`` (5 min) the name, and separately the address, is locked for
   ``lockout_s`` (60 s), doubled at each further lockout up to ``max_lockout_s`` (15 min); a lockout history is
   forgotten after ``forget_s`` (1 h) without failures. A locked login is answered HTTP 429
   ``{"detail": "Too many failed logins; try again in N s"}`` (with ``Retry-After``) even when the password is
   right, so guessing learns nothing while locked. Every failed or refused login is answered ``failure_delay_s``
   (1 s) late, with ``asyncio.sleep`` (other students are not slowed). A successful login clears the user's
   counter (not the address's, or one valid account could reset it between guesses at another). Attempts in
   flight count against the limit, so 200 parallel guesses get at most 5 password checks. Memory is bounded:
   at most ``max_keys`` names and addresses are tracked, idle ones first forgotten. The address is the one
   uvicorn reports (it honours ``X-Forwarded-For`` only from 127.0.0.1, its ``FORWARDED_ALLOW_IPS`` default).

2. **Session-acting routes require a login.** Gradio answers these without any login check (read in gradio
   6.31.0, ``gradio/routes.py``): ``POST /gradio_api/cancel`` (l. 1717, body ``session_hash``, ``fn_index``,
   ``event_id``), ``POST /gradio_api/reset`` (l. 1460-1464, a no-op today that answers ``{"success": true}``),
   ``GET /gradio_api/heartbeat/{session_hash}`` (l. 1466), ``POST /gradio_api/stream/{event_id}`` and
   ``/stream/{event_id}/close`` (l. 1337-1355). Every other route that runs or reads events (``/queue/join``,
   ``/queue/data``, ``/call``, ``/run``, ``/upload``, ``/file=``, ``/config``, ...) has
   ``dependencies=[Depends(login_check)]``. There are no unprefixed aliases: the API router is mounted once,
   under ``/gradio_api`` (l. 2685).

   *Could they act on another student's session?* Yes, for anyone who knows that session's identifiers, and
   with no login at all (``tests/test_login_guard.py`` shows it on unguarded Gradio): ``/cancel`` cancels the
   running task named ``{session_hash}_{fn_index}`` (``utils.cancel_tasks``; ``fn_index`` is a small integer
   one can enumerate), removes the queued event ``event_id`` from the queue whatever its session
   (``Queue.remove_from_queue``, queueing.py l. 453) and closes its generator; closing a
   ``/heartbeat/{session_hash}`` stream marks that session's state closed, runs its ``unload`` handlers and ends
   its pending events (routes.py l. 1492-1547); ``/stream/{event_id}`` feeds a streaming event and
   ``/stream/{event_id}/close`` ends it. What protects a session is only that its identifiers are secret:
   ``event_id`` is ``uuid.uuid4().hex`` (queueing.py l. 68), sent only to its own browser, and ``session_hash``
   is made in the browser by ``Math.random().toString(36).substring(2)`` (templates/frontend/assets/index-*.js;
   at most 52 bits, not a cryptographic generator; ``gradio_client`` uses ``uuid4``) and travels only in that
   browser's requests. No code of this app reads a session hash or event id, so none is shown in the page, the
   logs or the files, and a stranger cannot guess one in practice; but a leaked one (a screenshot of the
   browser's network tab, a proxy log) was enough, without a login. With the guard these routes answer 401
   unless the request carries a valid login cookie, as Gradio's own ``login_check`` would: the guard asks
   Gradio's ``get_current_user`` (``GET /gradio_api/user``, l. 425-436, which looks the
   ``access-token[-unsecure]-<cookie_id>`` cookie up in ``app.tokens`` or calls ``auth_dependency``),
   in-process, never a re-implementation. A logged-in student who knew another's hash could still act on it
   (Gradio does not bind sessions to users), but nobody is shown one.

Gradio's login page only reacts to 200 (reload) and 400 ("Incorrect credentials"), so it shows nothing for a
429; ``guarded_launch_kwargs`` therefore puts the rule in the login page's ``auth_message``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from starlette.middleware import Middleware
from starlette.requests import Request

log = logging.getLogger(__name__)

try:  # "/gradio_api"
    from gradio.route_utils import API_PREFIX
except ImportError:  # pragma: no cover - older Gradio
    API_PREFIX = "/gradio_api"

LOGIN_PATHS = frozenset({"/login", "/login/"})
#: Routes Gradio serves without ``login_check`` that act on a session or an event (see the module docstring).
SESSION_ROUTES = re.compile(
    "^" + re.escape(API_PREFIX) + r"/(cancel|reset|heartbeat/[^/]+|stream/[^/]+(/close)?)/?$")
USER_PATH = API_PREFIX + "/user"  # Gradio's get_current_user, answers the user name or null
MAX_LOGIN_BODY = 64 * 1024


def _retry_message(seconds: float) -> str:
    return f"Too many failed logins; try again in {max(1, math.ceil(seconds))} s"


@dataclass
class _Entry:
    failures: collections.deque = field(default_factory=collections.deque)  # monotonic times, within the window
    locked_until: float = 0.0
    lockouts: int = 0          # lockouts so far: the next one lasts lockout_s * 2 ** lockouts
    pending: int = 0           # attempts let through and not finished yet
    last_failure: float = -math.inf


class LoginRateLimiter:
    """Failed-login counters per user name and per client address, with lockouts that double.

    ``acquire(user, address)`` returns 0.0 and reserves an attempt, or the seconds to wait before trying again
    (nothing reserved); every reserved attempt ends with ``finish(user, address, ok)``: ``True`` a good login
    (clears the user's failures and lockout history), ``False`` a failed one (counts for both keys and may lock
    them), ``None`` neither (e.g. a malformed request). In-flight attempts count against ``max_failures``, so
    parallel guesses cannot overtake the counter. Thread safe (one lock, never held while waiting); ``clock`` is
    a monotonic clock in seconds, injectable for tests. At most ``max_keys`` (+2) names and addresses are kept.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 60.0,
                 max_lockout_s: float = 900.0, forget_s: float = 3600.0, max_keys: int = 10_000,
                 busy_retry_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if max_failures < 1 or max_keys < 1:
            raise ValueError("max_failures and max_keys must be >= 1")
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.max_lockout_s, self.forget_s, self.max_keys = max_lockout_s, forget_s, max_keys
        self.busy_retry_s, self.clock = busy_retry_s, clock
        self._entries: collections.OrderedDict[tuple[str, str], _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys(user: str, address: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return ("user", (user or "").strip()[:256]), ("addr", address or "unknown")

    def _get(self, key, now: float, create: bool) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            if not create:
                return None
            entry = self._entries[key] = _Entry()
        else:
            self._entries.move_to_end(key)  # least recently used first
        while entry.failures and entry.failures[0] <= now - self.window_s:
            entry.failures.popleft()
        return entry

    def _idle(self, entry: _Entry, now: float) -> bool:
        """Nothing to remember: no attempt in flight, no lock, no failure in the window, no recent lockout."""
        return (entry.pending == 0 and entry.locked_until <= now
                and (not entry.failures or entry.failures[-1] <= now - self.window_s)
                and (entry.lockouts == 0 or now - entry.last_failure >= self.forget_s))

    def _trim(self, now: float, keep=()) -> None:
        """Forget idle entries among the least recently used; over ``max_keys``, drop unlocked then oldest."""
        for key in list(itertools.islice(self._entries, 64)):  # amortised
            if key not in keep and self._idle(self._entries[key], now):
                del self._entries[key]
        if len(self._entries) <= self.max_keys:
            return
        for key, entry in list(self._entries.items()):
            if len(self._entries) <= self.max_keys:
                return
            if key not in keep and entry.pending == 0 and entry.locked_until <= now:
                del self._entries[key]
        for key in list(self._entries):
            if len(self._entries) <= self.max_keys:
                return
            if key not in keep:
                del self._entries[key]

    def _wait(self, now: float, entries) -> float:
        wait = 0.0
        for entry in entries:
            if entry is None:
                continue
            if entry.locked_until > now:
                wait = max(wait, entry.locked_until - now)
            elif len(entry.failures) + entry.pending >= self.max_failures:
                wait = max(wait, self.busy_retry_s)  # earlier attempts still in flight
        return wait

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until ``user`` at ``address`` may try again (0.0: now); reserves nothing."""
        with self._lock:
            now = self.clock()
            return self._wait(now, [self._get(k, now, create=False) for k in self._keys(user, address)])

    def acquire(self, user: str, address: str) -> float:
        """0.0 with an attempt reserved (end it with ``finish``), or the seconds to wait (nothing reserved)."""
        with self._lock:
            now = self.clock()
            keys = self._keys(user, address)
            entries = [self._get(k, now, create=True) for k in keys]
            wait = self._wait(now, entries)
            if wait == 0.0:
                for entry in entries:
                    entry.pending += 1
            self._trim(now, keep=keys)
            return wait

    def finish(self, user: str, address: str, ok: bool | None) -> None:
        """End a reserved attempt: ``True`` logged in, ``False`` failed, ``None`` neither."""
        with self._lock:
            now = self.clock()
            user_key, addr_key = keys = self._keys(user, address)
            for key in keys:
                entry = self._get(key, now, create=ok is False)
                if entry is None:
                    continue
                entry.pending = max(0, entry.pending - 1)
                if ok is False:
                    self._fail(key, entry, now)
                elif ok and key == user_key:
                    entry.failures.clear()
                    entry.lockouts, entry.locked_until, entry.last_failure = 0, 0.0, -math.inf
            self._trim(now, keep=keys)

    def _fail(self, key, entry: _Entry, now: float) -> None:
        entry.failures.append(now)
        entry.last_failure = now
        if len(entry.failures) >= self.max_failures:
            duration = min(self.lockout_s * 2 ** entry.lockouts, self.max_lockout_s)
            entry.locked_until = max(entry.locked_until, now + duration)
            entry.lockouts += 1
            entry.failures.clear()
            log.warning("login locked for %.0f s after %d failed logins: %s %r", duration, self.max_failures, *key)

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _route_path(scope) -> str:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _auth_enabled(app) -> bool:
    """Gradio's own test (``login_check``): a login is required when ``auth`` or ``auth_dependency`` is set."""
    return getattr(app, "auth", None) is not None or getattr(app, "auth_dependency", None) is not None


async def _send_json(send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class LoginGuardMiddleware:
    """ASGI middleware: limits failed ``POST /login`` and requires a login on ``SESSION_ROUTES``.

    Does nothing when the Gradio app has no login (``app.auth`` and ``app.auth_dependency`` unset).
    ``limiter``: a ``LoginRateLimiter`` (a default one if None); ``failure_delay_s``: how late failed and
    refused logins are answered.
    """

    def __init__(self, app, limiter: LoginRateLimiter | None = None, failure_delay_s: float = 1.0):
        self.app = app
        self.limiter = limiter if limiter is not None else LoginRateLimiter()
        self.failure_delay_s = failure_delay_s

    async def __call__(self, scope, receive, send):
        gradio_app = scope.get("app")
        if scope["type"] != "http" or not _auth_enabled(gradio_app):
            return await self.app(scope, receive, send)
        path = _route_path(scope)
        if path in LOGIN_PATHS and scope["method"] == "POST":
            return await self._login(scope, receive, send)
        if SESSION_ROUTES.match(path) and not await self._logged_in(scope):
            message = getattr(gradio_app.get_blocks(), "auth_message", None)  # the body of Gradio's login_check
            return await _send_json(send, 401, {"detail": {"error": "Not authenticated", "auth_message": message}})
        return await self.app(scope, receive, send)

    async def _logged_in(self, scope) -> bool:
        """Whether the request carries a login, asked of Gradio itself: its ``GET /gradio_api/user`` endpoint
        (``get_current_user``: the ``access-token[-unsecure]-<cookie_id>`` cookie in ``app.tokens``, or
        ``auth_dependency``), called in-process with the request's headers. Any answer but a user name is no."""
        sub = {**scope, "method": "GET", "path": scope.get("root_path", "") + USER_PATH,
               "raw_path": (scope.get("root_path", "") + USER_PATH).encode(), "query_string": b""}
        status, chunks, asked = 0, [], False

        async def receive():
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(sub, receive, send)
        try:
            user = json.loads(b"".join(chunks)) if status == 200 else None
        except ValueError:
            user = None
        return isinstance(user, str) and bool(user)

    async def _login(self, scope, receive, send):
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_LOGIN_BODY:
                return await _send_json(send, 413, {"detail": "Login request too large"})
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        def replay():
            sent = False

            async def _receive():
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()
            return _receive

        try:
            async with Request(scope, replay()).form(max_files=0, max_fields=16) as form:
                user = form.get("username")
                user = user.strip() if isinstance(user, str) else ""
        except Exception:  # malformed form: Gradio answers it (422); still count it per address
            user = ""
        address = scope["client"][0] if scope.get("client") else "unknown"

        wait = self.limiter.acquire(user, address)
        if wait > 0:  # locked (or its earlier attempts still running): refuse without checking the password
            await asyncio.sleep(self.failure_delay_s)
            wait = max(1.0, wait - self.failure_delay_s)
            return await _send_json(send, 429, {"detail": _retry_message(wait)},
                                    {"Retry-After": str(math.ceil(wait))})

        finished = False

        async def send_wrapper(message):
            nonlocal finished
            if message["type"] == "http.response.start" and not finished:
                finished = True
                status = message["status"]  # Gradio: 200 logged in, 400 "Incorrect credentials", 422 bad form
                ok = True if status == 200 else False if 400 <= status < 500 else None
                self.limiter.finish(user, address, ok)
                if ok is False:
                    await asyncio.sleep(self.failure_delay_s)
            await send(message)

        try:
            await self.app(scope, replay(), send_wrapper)
        finally:
            if not finished:  # no response (an error, a disconnect): release the reserved attempt
                self.limiter.finish(user, address, None)


def guard_middleware(limiter: LoginRateLimiter | None = None, failure_delay_s: float = 1.0) -> Middleware:
    return Middleware(LoginGuardMiddleware, limiter=limiter, failure_delay_s=failure_delay_s)


def auth_message(limiter: LoginRateLimiter) -> str:
    """The login page's note on the lockout (Gradio's login form shows nothing for a 429)."""
    return (f"Log in with the name and password your teacher gave you. After {limiter.max_failures} wrong "
            f"passwords within {limiter.window_s / 60:g} min, logins for that name and from this computer pause "
            f"for {limiter.lockout_s:g} s (longer if it happens again).")


def guarded_launch_kwargs(auth, *, limiter: LoginRateLimiter | None = None, failure_delay_s: float = 1.0,
                          login_message: str | bool = True) -> dict:
    """``launch()`` keyword arguments for ``auth``: just ``{"auth": auth}`` without a login; with one, also the
    guard middleware (through ``app_kwargs``, Gradio's way to configure its FastAPI app) and, unless
    ``login_message`` is False, the login page's ``auth_message`` (``True``: ``auth_message(limiter)``)."""
    if not auth:
        return {"auth": auth}
    limiter = limiter if limiter is not None else LoginRateLimiter()
    kwargs = {"auth": auth, "app_kwargs": {"middleware": [guard_middleware(limiter, failure_delay_s)]}}
    if login_message:
        kwargs["auth_message"] = auth_message(limiter) if login_message is True else login_message
    return kwargs
