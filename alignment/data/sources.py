"""Which dataset sources a browser or API user may load: confinement of the Data tab's path box.

The teacher's own command line (``class7_1.py --dataset``, ``app.py --dataset``) may name any file. What a
student types in the app is confined by ``resolve_dataset_source``:

- ``"builtin"``;
- a file whose real path (symlinks resolved) lies inside one of the allowed data folders (the project's
  ``data/``, each ``--data-dir`` given at launch, the output folder with ``collected_annotations.json``), or one
  of the explicitly allowed files. A relative name is tried against each data folder, then against the current
  directory, and is accepted only if its real path still lies inside a data folder;
- a hub dataset id ``owner/name``, only when the server may use the internet (``allow_hub``) and no local path of
  that name exists (``datasets.load_dataset`` would read a local folder of that name).

Everything else (paths outside the folders, ``../`` traversal out of them, symlinks pointing out, missing files,
``%``-encoded text, control characters, over-long input) raises ``DisallowedSource`` with one message that depends
only on the configuration, never on the input, so it tells nothing about which files exist on the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

BUILTIN = "builtin"
MAX_SOURCE_CHARS = 1024
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}")

_ABS_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s'\"`,;:()\[\]{}<>/]+/)*[^\s'\"`,;:()\[\]{}<>/]+")

__all__ = ["DisallowedSource", "MAX_SOURCE_CHARS", "DataFolder", "data_folders", "display_path", "hub_allowed",
           "is_hub_id", "redact_paths", "rejection_message", "resolve_dataset_source"]


class DisallowedSource(ValueError):
    """A dataset source outside what the server allows; the message is the same for every rejected input."""


class DataFolder:
    """An allowed folder: its real path (``root``) and the name users see (``display``, never an absolute path)."""

    def __init__(self, path: str | Path, display: str | None = None):
        path = Path(path)
        self.root = path.resolve()
        if display is None:  # as configured when relative ("../shared/data"), else only the folder's own name
            display = path.name if path.is_absolute() else str(path)
        self.display = display.rstrip("/") + "/"

    def __repr__(self) -> str:
        return f"DataFolder({str(self.root)!r}, display={self.display!r})"


def data_folders(dirs: Iterable[str | Path | DataFolder]) -> list[DataFolder]:
    """``DataFolder`` for each entry (paths or ``DataFolder``), duplicates (same real path) removed, order kept."""
    out: list[DataFolder] = []
    for d in dirs:
        folder = d if isinstance(d, DataFolder) else DataFolder(d)
        if all(f.root != folder.root for f in out):
            out.append(folder)
    return out


def hub_allowed() -> bool:
    """Whether hub ids may be loaded: the server has internet, i.e. ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``
    are not set to 1."""
    return not any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
                   for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def is_hub_id(text: str) -> bool:
    """``owner/name`` of letters, digits, ``-``, ``_``, ``.`` (no ``..``, no leading ``.`` or ``/``, no file suffix)."""
    return (len(text) <= 200 and _HUB_ID.fullmatch(text) is not None and ".." not in text
            and not Path(text).suffix)


def rejection_message(dirs: Iterable[str | Path | DataFolder], *, allow_hub: bool) -> str:
    """The one message for every rejected source (it names the folders by their display names only)."""
    names = ", ".join(f.display for f in data_folders(dirs)) or "none"
    if allow_hub:
        return (f"Not an allowed dataset: give 'builtin', a file inside the data folders ({names}) "
                "or a hub dataset id (owner/name)")
    return (f"Not an allowed dataset: give 'builtin' or a file inside the data folders ({names}); "
            "hub dataset ids need a server with internet")


def display_path(path: str | Path, dirs: Iterable[str | Path | DataFolder]) -> str:
    """``path`` as users see it: relative to the data folder holding it (``data/preferences.jsonl``), else its
    base name. Never an absolute server path."""
    real = Path(path).resolve()
    for folder in data_folders(dirs):
        if real.is_relative_to(folder.root):
            return folder.display + real.relative_to(folder.root).as_posix()
    return real.name


def redact_paths(message: str, replacements: dict[str, str] | None = None) -> str:
    """``message`` without server paths: each key of ``replacements`` (longest first) becomes its value, then any
    remaining absolute path becomes its base name (``/tmp/gradio/ab12/prefs.csv`` -> ``prefs.csv``)."""
    for old, new in sorted((replacements or {}).items(), key=lambda kv: -len(kv[0])):
        if old:
            message = message.replace(old, new)
    return _ABS_PATH.sub(lambda m: m.group().rsplit("/", 1)[-1], message)


def _inside(real: Path, folders: list[DataFolder], files: set[Path]) -> bool:
    return real in files or any(real.is_relative_to(f.root) for f in folders)


def resolve_dataset_source(text: str, data_dirs: Iterable[str | Path | DataFolder], *, allow_hub: bool,
                           allowed_files: Iterable[str | Path] = ()) -> str:
    """Turn what a browser or API user typed into a source that ``load_preference_dataset`` may read.

    Args:
        text: the user's input (surrounding whitespace ignored).
        data_dirs: the allowed folders (paths or ``DataFolder``); a folder that does not exist allows nothing.
        allow_hub: accept hub ids ``owner/name`` (the server has internet; see ``hub_allowed``).
        allowed_files: single files allowed wherever they are (e.g. a custom annotations file).

    Returns:
        ``"builtin"``, the real absolute path of an allowed file (symlinks resolved), or a hub id.

    Raises:
        DisallowedSource: anything else, always with ``rejection_message(data_dirs, allow_hub=allow_hub)``.
    """
    folders = data_folders(data_dirs)
    refused = DisallowedSource(rejection_message(folders, allow_hub=allow_hub))
    if not isinstance(text, str):
        raise refused
    text = text.strip()
    if text == BUILTIN:
        return BUILTIN
    # '%' is refused rather than decoded: nothing here is a URL, and '%2e%2e%2f' must never become '../'.
    if not text or len(text) > MAX_SOURCE_CHARS or "%" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise refused
    files = set()
    for f in allowed_files:
        try:
            files.add(Path(f).resolve(strict=True))
        except (OSError, RuntimeError):
            continue
    path = Path(text)
    candidates = [path] if path.is_absolute() else [f.root / path for f in folders] + [Path.cwd() / path]
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=True)
            if real.is_file() and _inside(real, folders, files):
                return str(real)
        except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a name too long
            continue
    if allow_hub and is_hub_id(text):
        local = [Path(text), *(f.root / text for f in folders)]
        try:
            exists = any(os.path.lexists(p) for p in local)
        except (OSError, ValueError):
            exists = True
        if not exists:  # load_dataset would read a local folder of that name
            return text
    raise refused
