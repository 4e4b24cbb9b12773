"""Small helpers shared by the tabs: identity, escaping, messages, progress bar."""

from __future__ import annotations

import html
import re

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


def login(request) -> str | None:
    """The caller's verified login (``gr.Request.username``) under ``--auth``; None without logins. The manager
    checks ownership and the teacher's controls with it."""
    return (getattr(request, "username", None) if request is not None else None) or None


def identity(request, typed: str | None = None) -> str:
    """Who is calling: the login under ``--auth``, otherwise the name typed in the page (unverified; the page says
    so). Handlers pass the result to the manager as the annotator or voter name."""
    return login(request) or (typed or "").strip()


def fill_identity(request: gr.Request):
    """For ``demo.load``: under ``--auth`` the login fills a name box, read-only (annotator, arena voter)."""
    user = login(request)
    return gr.update(value=user, interactive=False, info="Your login.") if user else gr.update()


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
