"""Login protection (ui/login_guard.py): failed-login lockout per user and address, login required on the
session routes Gradio leaves open (/gradio_api/cancel, /reset, /heartbeat, /stream/.../close).

The real app is served in this process on the tiny model with ``auth=AUTH`` and exactly the wiring of app.py
(``guarded_launch_kwargs``), with an injected clock and a short failure delay; requests go through httpx to
127.0.0.1 only. uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1, which lets a test play other addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import httpx
import pytest

from ui.login_guard import (LoginGuardMiddleware, LoginRateLimiter, auth_message, guard_middleware,
                            guarded_launch_kwargs)

AUTH = [("ana", "pw1"), ("teacher", "pw2")]
DELAY = 0.2  # failure delay in these tests (1 s in the app)
CANCEL = {"session_hash": "not-a-session", "fn_index": 0, "event_id": "not-an-event"}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    from conftest import launch_app

    clock = FakeClock()
    limiter = LoginRateLimiter(clock=clock)
    kwargs = guarded_launch_kwargs(AUTH, limiter=limiter, failure_delay_s=DELAY)
    manager, demo, url = launch_app(tmp_path_factory.mktemp("guarded"), launch_kwargs=kwargs)
    yield url.rstrip("/"), limiter, clock
    demo.close()


@pytest.fixture()
def app(guarded):
    url, limiter, clock = guarded
    limiter.reset()
    yield guarded
    limiter.reset()


def login(url, user, password, address=None, client=None):
    headers = {"X-Forwarded-For": address} if address else {}
    post = (client or httpx).post
    return post(f"{url}/login", data={"username": user, "password": password}, headers=headers, timeout=10)


@contextlib.contextmanager
def logged_in_client(url, user="ana", password="pw1"):
    with httpx.Client(timeout=10) as client:
        r = login(url, user, password, client=client)
        assert r.status_code == 200, r.text
        yield client


# ---------------------------------------------------------------- open routes


def test_cancel_reset_heartbeat_and_stream_close_need_a_login(app):
    url, limiter, _ = app
    with httpx.Client(timeout=10) as anon:
        assert anon.post(f"{url}/gradio_api/cancel", json=CANCEL).status_code == 401
        assert anon.post(f"{url}/gradio_api/reset", json={"event_id": "x"}).status_code == 401
        assert anon.post(f"{url}/gradio_api/reset/", json={"event_id": "x"}).status_code == 401
        assert anon.post(f"{url}/gradio_api/stream/x/close").status_code == 401
        r = anon.get(f"{url}/gradio_api/heartbeat/some-session")
        assert r.status_code == 401 and r.json()["detail"]["error"] == "Not authenticated"
        assert r.json()["detail"]["auth_message"] == auth_message(limiter) == (  # the login page explains the lockout
            "Log in with the name and password your teacher gave you. After 5 wrong passwords within 5 min, "
            "logins for that name and from this computer pause for 60 s (longer if it happens again).")
        with logged_in_client(url) as ana:  # a forged token under the real cookie names is not a login
            names = [c.name for c in ana.cookies.jar]
        assert any(n.startswith("access-token-unsecure-") for n in names)
        for name in names:
            anon.cookies.set(name, "forged")
        assert anon.post(f"{url}/gradio_api/cancel", json=CANCEL).status_code == 401
        anon.cookies.clear()
        # no unprefixed aliases exist
        assert anon.post(f"{url}/cancel", json=CANCEL).status_code in (404, 405)
    with logged_in_client(url) as ana:  # logged in: Gradio answers as usual
        r = ana.post(f"{url}/gradio_api/cancel", json=CANCEL)
        assert r.status_code == 200 and r.json() == {"success": True}
        r = ana.post(f"{url}/gradio_api/reset", json={"event_id": "x"})
        assert r.status_code == 200 and r.json() == {"success": True}
        assert ana.post(f"{url}/gradio_api/stream/x/close").status_code == 404  # Gradio: no such event
        with ana.stream("GET", f"{url}/gradio_api/heartbeat/some-session") as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")


def test_gradio_client_logs_in_through_the_guard(app):
    from gradio_client import Client

    url, _, _ = app
    client = Client(url + "/", auth=("teacher", "pw2"), verbose=False)  # /login, /config, heartbeat with cookies
    try:
        assert client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    finally:
        client.close()
    with pytest.raises(Exception):
        Client(url + "/", auth=("teacher", "wrong"), verbose=False)


def _mini_app(extra_launch):
    """A one-button Blocks with a 30 s async function, launched with AUTH; returns (demo, url, fn_index)."""

    async def slow():
        await asyncio.sleep(30)
        return "done"

    with gr.Blocks() as demo:
        out = gr.Textbox()
        button = gr.Button()
        button.click(slow, None, out, api_name="slow")
    demo.queue().launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1",
                        **{"auth": AUTH, **extra_launch})
    return demo, demo.local_url.rstrip("/"), next(iter(demo.fns)), button._id


def _start_and_cancel(url, fn_index, trigger_id, cancel_client):
    """Ana starts the slow event in session S; ``cancel_client`` POSTs /cancel for S. Returns (cancel status,
    seconds from the cancel to ana's ``process_completed``, or None if it did not come within 3 s)."""
    session = "victim-session-1"
    with logged_in_client(url) as ana:
        r = ana.post(f"{url}/gradio_api/queue/join", json={"data": [], "fn_index": fn_index, "trigger_id": trigger_id,
                                                           "session_hash": session, "event_data": None})
        assert r.status_code == 200, r.text
        event_id = r.json()["event_id"]
        status, started = None, None
        with ana.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_starts" and status is None:
                    started = time.monotonic()
                    status = cancel_client.post(f"{url}/gradio_api/cancel", json={
                        "session_hash": session, "fn_index": fn_index, "event_id": event_id}).status_code
                    if status != 200:  # refused: stop the event with ana's own login
                        ana.post(f"{url}/gradio_api/cancel", json={
                            "session_hash": session, "fn_index": fn_index, "event_id": event_id})
                        return status, None
                if msg.get("msg") == "process_completed":
                    return status, time.monotonic() - started
                if time.monotonic() - (started or time.monotonic()) > 3:
                    return status, None
    return status, None


def test_unguarded_gradio_lets_anyone_cancel_another_session():
    """What the guard closes: Gradio's own /cancel, without any login, stops a logged-in student's event
    (it only needs the session hash, fn_index and event id)."""
    demo, url, fn_index, trigger = _mini_app({})
    try:
        with httpx.Client(timeout=10) as anon:
            status, after = _start_and_cancel(url, fn_index, trigger, anon)
        assert status == 200 and after is not None and after < 3
    finally:
        demo.close()


def test_guard_refuses_the_same_cancel_without_a_login():
    demo, url, fn_index, trigger = _mini_app(guarded_launch_kwargs(AUTH, failure_delay_s=DELAY))
    try:
        with httpx.Client(timeout=10) as anon:
            status, _ = _start_and_cancel(url, fn_index, trigger, anon)
        assert status == 401
        with logged_in_client(url, "teacher", "pw2") as teacher:  # any logged-in user: Gradio's own behaviour
            status, after = _start_and_cancel(url, fn_index, trigger, teacher)
        assert status == 200 and after is not None
    finally:
        demo.close()


def test_middleware_does_nothing_without_auth():
    assert guarded_launch_kwargs(None) == {"auth": None}
    with gr.Blocks() as demo:
        gr.Textbox()
    demo.queue().launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1",
                        app_kwargs={"middleware": [guard_middleware()]})
    try:
        url = demo.local_url.rstrip("/")
        assert any(m.cls is LoginGuardMiddleware for m in demo.app.user_middleware)
        r = httpx.post(f"{url}/gradio_api/cancel", json=CANCEL, timeout=10)
        assert r.status_code == 200 and r.json() == {"success": True}
    finally:
        demo.close()


# ---------------------------------------------------------------- failed logins


def test_six_wrong_passwords_lock_the_user_until_the_lockout_ends(app):
    url, limiter, clock = app
    for _ in range(5):
        assert login(url, "ana", "wrong").status_code == 400  # Gradio's "Incorrect credentials"
    r = login(url, "ana", "wrong")
    assert r.status_code == 429
    r = login(url, "ana", "pw1")  # the right password, refused while locked
    assert r.status_code == 429 and r.json() == {"detail": "Too many failed logins; try again in 60 s"}
    assert r.headers["retry-after"] == "60" and "set-cookie" not in r.headers
    clock.now += 30
    assert login(url, "ana", "pw1").json()["detail"] == "Too many failed logins; try again in 30 s"
    clock.now += 31
    with httpx.Client(timeout=10) as ana:
        r = login(url, "ana", "pw1", client=ana)
        assert r.status_code == 200 and r.json() == {"success": True}
        assert ana.get(f"{url}/config").status_code == 200  # a real login
    assert limiter.retry_after("ana", "10.9.9.9") == 0.0  # the good login cleared ana's failures


def test_the_lockout_doubles_and_a_good_login_resets_it(app):
    url, _, clock = app
    for expected_lock in (60, 120, 240):
        for _ in range(5):
            assert login(url, "ana", "wrong", address="10.0.0.1").status_code == 400
        r = login(url, "ana", "pw1", address="10.0.0.2")
        assert r.json()["detail"] == f"Too many failed logins; try again in {expected_lock} s"
        clock.now += expected_lock + 1
    assert login(url, "ana", "pw1", address="10.0.0.2").status_code == 200
    for _ in range(5):
        login(url, "ana", "wrong", address="10.0.0.3")
    assert login(url, "ana", "pw1", address="10.0.0.4").json()["detail"].endswith("in 60 s")


def test_the_user_lock_holds_from_another_address_and_spares_other_users(app):
    url, _, _ = app
    for _ in range(5):
        assert login(url, "ana", "wrong", address="10.0.0.1").status_code == 400
    assert login(url, "ana", "pw1", address="10.0.0.2").status_code == 429  # the user is locked
    assert login(url, "teacher", "pw2", address="10.0.0.2").status_code == 200  # another user, another address


def test_another_user_from_the_same_address_is_limited_by_the_address(app):
    url, limiter, clock = app
    for i in range(5):  # one failure per name, five from one address
        assert login(url, f"guess{i}", "wrong", address="10.0.0.7").status_code == 400
    r = login(url, "teacher", "pw2", address="10.0.0.7")
    assert r.status_code == 429 and r.json()["detail"].endswith("in 60 s")
    assert login(url, "teacher", "pw2", address="10.0.0.8").status_code == 200  # only that address
    clock.now += 61
    assert login(url, "teacher", "pw2", address="10.0.0.7").status_code == 200


def test_the_browser_form_multipart_is_counted_per_user(app):
    """Gradio's login page posts FormData (multipart/form-data), not a urlencoded form."""
    url, limiter, _ = app
    for _ in range(5):
        r = httpx.post(f"{url}/login", files={"username": (None, "ana"), "password": (None, "wrong")}, timeout=10)
        assert r.status_code == 400
    assert limiter.retry_after("ana", "10.1.1.1") > 0
    r = httpx.post(f"{url}/login", files={"username": (None, "ana"), "password": (None, "pw1")}, timeout=10)
    assert r.status_code == 429


def test_parallel_guesses_get_at_most_five_password_checks(app):
    url, _, _ = app
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(lambda _: login(url, "ana", "wrong", address="10.0.1.1").status_code, range(12)))
    assert codes.count(400) <= 5 and codes.count(429) >= 7 and set(codes) <= {400, 429}
    assert login(url, "ana", "pw1", address="10.0.1.2").status_code == 429


def test_failed_and_refused_logins_are_delayed(app):
    url, _, _ = app
    for _ in range(2):
        t = time.perf_counter()
        assert login(url, "ana", "wrong").status_code == 400
        assert time.perf_counter() - t >= DELAY * 0.95
    for _ in range(3):
        login(url, "ana", "wrong")
    t = time.perf_counter()
    assert login(url, "ana", "pw1").status_code == 429
    assert time.perf_counter() - t >= DELAY * 0.95


# ---------------------------------------------------------------- the limiter itself


def test_limiter_locks_after_five_failures_within_the_window():
    clock = FakeClock()
    lim = LoginRateLimiter(clock=clock)
    for _ in range(4):
        assert lim.acquire("ana", "a1") == 0.0
        lim.finish("ana", "a1", False)
        clock.now += 100  # spread over 400 s: the first ones leave the 300 s window
    assert lim.acquire("ana", "a1") == 0.0
    lim.finish("ana", "a1", False)
    assert lim.retry_after("ana", "a1") == 0.0  # only 3 failures within the last 300 s
    for _ in range(2):
        assert lim.acquire("ana", "a1") == 0.0
        lim.finish("ana", "a1", False)
    assert lim.retry_after("ana", "a1") == 60.0
    assert lim.acquire("ana", "a1") == 60.0  # refused, nothing reserved
    assert lim.retry_after("ben", "a2") == 0.0


def test_limiter_doubles_up_to_the_cap_and_success_clears_the_user_only():
    clock = FakeClock()
    lim = LoginRateLimiter(max_failures=2, lockout_s=60, max_lockout_s=150, clock=clock)
    for expected in (60, 120, 150, 150):
        for _ in range(2):
            lim.acquire("ana", "a1")
            lim.finish("ana", "a1", False)
        assert lim.retry_after("ana", "a9") == expected  # the user, from any address
        assert lim.retry_after("zoe", "a1") == expected  # the address, for any user
        clock.now += expected
    lim.acquire("ana", "a1")
    lim.finish("ana", "a1", False)
    lim.acquire("ana", "a1")
    lim.finish("ana", "a1", True)  # a good login clears ana's failures and lockout history ...
    lim.acquire("ana", "a2")
    lim.finish("ana", "a2", False)
    assert lim.retry_after("ana", "a2") == 0.0
    lim.acquire("zoe", "a1")  # ... not the address's: its 2nd failure locks it (960 s, capped)
    lim.finish("zoe", "a1", False)
    assert lim.retry_after("nobody", "a1") == 150


def test_limiter_counts_attempts_in_flight_and_releases_them():
    clock = FakeClock()
    lim = LoginRateLimiter(clock=clock)
    assert [lim.acquire("ana", "a1") for _ in range(6)] == [0.0] * 5 + [1.0]
    for _ in range(5):
        lim.finish("ana", "a1", None)  # neither good nor bad (a malformed form)
    assert lim.acquire("ana", "a1") == 0.0


def test_limiter_is_thread_safe():
    lim = LoginRateLimiter()
    barrier = threading.Barrier(16)

    def attempt(_):
        barrier.wait()
        return lim.acquire("ana", "a1")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(16)))
    assert results.count(0.0) == 5


def test_limiter_memory_is_bounded_and_idle_entries_are_forgotten():
    clock = FakeClock()
    lim = LoginRateLimiter(max_keys=20, clock=clock)
    for _ in range(5):
        lim.acquire("ana", "a1")
        lim.finish("ana", "a1", False)
    for i in range(500):  # a spray of names and addresses, one failure each
        lim.acquire(f"u{i}", f"b{i}")
        lim.finish(f"u{i}", f"b{i}", False)
        assert len(lim) <= 22
    assert lim.retry_after("ana", "zz") == 60.0 and lim.retry_after("x", "a1") == 60.0  # locks kept
    clock.now += 3600 + 61
    lim.acquire("late", "c1")
    lim.finish("late", "c1", True)
    assert len(lim) <= 2  # everything idle forgotten but the two keys just used
