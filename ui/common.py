"""Small helpers shared by the tabs: identity, escaping, messages, progress bar."""

from __future__ import annotations

import html
import re
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

_MD_ACTIVE = re.compile(r"([\\`\[\]])")


def md_escape(text) -> str:
    """``text`` made inert inside Markdown or HTML: ``<&>`` become entities (no tag, frame or script), the
    characters of links, images and code spans (``[ ] ` \\``) are backslash-escaped, and bare URLs are broken up
    so they are not auto-linked; so a student's name, prompt or rationale can never become a link, an image or
    markup on another student's page. Emphasis stays possible (harmless); newlines are kept."""
    out = _MD_ACTIVE.sub(r"\\\1", html.escape(str(text), quote=False))
    return out.replace("://", ":\\/\\/").replace("www.", "www\\.")


# Concurrency of the Gradio queue (its limit applies per event function, default 1 worker each). Events that
# only read or write files (annotation items and submits, stats, votes, status polls, training requests: a
# training runs in a worker process, never in a Gradio worker) run concurrently (FREE): one student's request
# never waits behind another's. Events that generate with the shared model join one group (MODEL) of up to 16 at
# once: the model pool's lock serialises the generate calls, and Compare requests with the same settings that
# arrive together are answered by one batched call (alignment.serving.batcher), so three students pressing
# Generate at once do not wait three times as long. Building the report (minutes of CPU) has its own single
# worker. An event that may or may not generate (the next annotation item: a dataset pair, or generated
# answers) is FREE; its generation takes the pool's lock.
FREE = {"concurrency_limit": None}
MODEL = {"concurrency_id": "model", "concurrency_limit": 16}
REPORT = {"concurrency_id": "report", "concurrency_limit": 1}


# Where ``downloadable`` puts the copies it hands to Gradio; a copy older than DOWNLOAD_TTL_S seconds is removed.
DOWNLOAD_DIR = Path(tempfile.gettempdir()) / "class7-downloads"
DOWNLOAD_TTL_S = 3600


def downloadable(paths) -> list[str]:
    """Copies of ``paths`` (files a student may download: their report, the exported pairs) in a fresh folder of
    their own under ``DOWNLOAD_DIR``, same file names, for a ``gr.File`` output.

    The app serves no folder of the server (no ``allowed_paths``): Gradio's ``/gradio_api/file=`` route would
    serve any file under one to anyone logged in, another student's runs included. A file an event returns is
    copied into Gradio's cache under a hashed name, but only from the working directory or the temp folder, and
    the output folder may be elsewhere (``--output-dir``); so the event returns a copy in the temp folder. Copies
    older than ``DOWNLOAD_TTL_S`` are deleted on the next call (Gradio keeps its own cached copy).
    """
    DOWNLOAD_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in DOWNLOAD_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > DOWNLOAD_TTL_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # removed by another request meanwhile
            pass
    folder = Path(tempfile.mkdtemp(dir=DOWNLOAD_DIR))
    copies = []
    for path in paths:
        copies.append(str(shutil.copy2(path, folder / Path(path).name)))
    return copies


def login(request) -> str | None:
    """The caller's verified login (``gr.Request.username``) under ``--auth``; None without logins. The manager
    checks ownership and the teacher's controls with it."""
    return (getattr(request, "username", None) if request is not None else None) or None


def identity(request, typed: str | None = None) -> str:
    """Who is calling: the login under ``--auth``, otherwise the name typed in the page (unverified; the page says
    so). Handlers pass the result to the manager as the annotator or voter name."""
    return login(request) or (typed or "").strip()


# Without --auth the name a student types is kept in their browser (gr.BrowserState: localStorage, encrypted
# with ``secret``) and fills every name box again on their next visit. Fixed key and secret, so a restart of the
# server does not forget it (with a random secret, Gradio's default, an old value can no longer be decrypted);
# the secret is sent to every browser in the page's config anyway: it hides nothing, and a name is no secret.
NAME_STORAGE_KEY = "alignment-lab-name"
NAME_SECRET = "alignment-lab-name-v1"
NAME_MAX = 64  # the name boxes' max_length


def name_store() -> gr.BrowserState:
    """The typed name in this browser's localStorage, as ``{"name": ...}`` (a dict, so that an emptied name is
    stored too: BrowserState does not write a falsy value). Create it OUTSIDE any ``gr.Tab`` or closed
    ``gr.Accordion``: Gradio renders those lazily, and a BrowserState that is not mounted when the page loads
    neither reads its stored value (``demo.load`` gets the default) nor writes one."""
    return gr.BrowserState({"name": ""}, storage_key=NAME_STORAGE_KEY, secret=NAME_SECRET)


def saved_name(saved) -> str:
    """The name in a ``name_store`` value (whatever the browser sent: a dict, a string, junk), trimmed."""
    name = saved.get("name") if isinstance(saved, dict) else saved
    return name.strip()[:NAME_MAX] if isinstance(name, str) else ""


def restore_names(n: int):
    """For ``demo.load`` with the name store as input and ``n`` name boxes as outputs: under ``--auth`` the login
    fills them, read-only (the stored name is ignored); without it the name kept in this browser, if any."""

    def restore(saved, request: gr.Request):
        user = login(request)
        name = saved_name(saved)  # one update per box: Gradio consumes an update dict as it applies it
        if user:
            return [gr.update(value=user, interactive=False, info="Your login.") for _ in range(n)]
        return [gr.update(value=name) if name else gr.update() for _ in range(n)]

    return restore


# A change the student made: the focus is in a text field holding the new value. Changes the page makes (the
# name restored at load, the login under --auth, the copies below) happen with the focus elsewhere, or change
# nothing further. (Gradio 6.31's Textbox "input" event is no help: it fires on keypress only, so not on a paste,
# Backspace or Delete, nor on Playwright's fill().)
def _typed_js(copies: int) -> str:
    """js for a name box's change: ``copies`` copies of the name, then the store's value; nothing (no output
    changes) unless the student made the change."""
    return ("(v) => { const el = document.activeElement;"
            " if (!el || !['INPUT', 'TEXTAREA'].includes(el.tagName) || el.value !== v) return;"
            " return [" + "v, " * copies + "{name: v}]; }")


def remember_name(demo: gr.Blocks, boxes: list, store=None):
    """One name for the whole page, kept in the browser without ``--auth``: when the student changes any of
    ``boxes``, the others and ``store`` get the name (in the browser, no server call); on page load
    ``restore_names`` fills the boxes (the login under ``--auth``: then the boxes are read-only and nothing is
    stored). Returns the load event, for ``.then`` events that read a name box at page load. ``store``: a
    ``name_store()`` made outside any tab (default: one made here, so then call this outside the tabs)."""
    store = store if store is not None else name_store()
    for i, box in enumerate(boxes):
        others = boxes[:i] + boxes[i + 1:]
        box.change(None, box, [*others, store], js=_typed_js(len(others)))
    return demo.load(restore_names(len(boxes)), store, boxes, api_visibility="private", **FREE)


def error_text(exc: BaseException) -> str:
    """A user-facing message for an exception (no traceback), escaped for Markdown."""
    msg = str(exc) or type(exc).__name__
    return f"⚠️ {md_escape(msg)}"


def progress_html(step: int, total: int, label: str = "") -> str:
    pct = 0 if not total else max(0, min(100, round(100 * step / total)))
    return (f"<div class='progress-outer' role='progressbar' aria-valuenow='{pct}'>"
            f"<div class='progress-inner' style='width:{pct}%'>{pct}%</div></div>"
            f"<div style='font-size:12px'>{html.escape(label)}</div>")


def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)
