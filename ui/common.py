"""Small helpers shared by the tabs."""

from __future__ import annotations


def error_text(exc: BaseException) -> str:
    """A user-facing message for an exception (no traceback)."""
    msg = str(exc) or type(exc).__name__
    return f"⚠️ {msg}"


def progress_html(step: int, total: int, label: str = "") -> str:
    pct = 0 if not total else max(0, min(100, round(100 * step / total)))
    return (f"<div class='progress-outer' role='progressbar' aria-valuenow='{pct}'>"
            f"<div class='progress-inner' style='width:{pct}%'>{pct}%</div></div>"
            f"<div style='font-size:12px'>{label}</div>")


def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)
