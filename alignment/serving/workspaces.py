"""Where everything lives under the output folder: one place that knows the layout.

::

    <output-dir>/
        collected_annotations.json     every student's annotations, one class-wide file (annotator in each record)
        annotations.sqlite             the annotation store behind it
        arena_votes.json               blind-arena votes
        jobs.sqlite                    the training queue (alignment.serving.queue)
        class/                         the class models: what everybody sees by default
            runs/<method>/<run-id>/    written by the headless pipeline (class7_1.py) or a teacher's training
            alignment_comparison_report.json, evaluation_results.json, final_summary.json, plots/
        students/<name>/               one student's workspace (name sanitised: it never leaves students/)
            runs/<method>/<run-id>/    their own trainings
            alignment_comparison_report.json, ...   their report (Report tab)

A run id is the UTC start time plus a short random suffix (``20261126T151300Z-3fa9c1``): sortable, and two
runs started in the same second never share a directory. A run is named in the app by its key
``<scope>/<method>/<run-id>`` with scope ``class`` or ``students/<name>``; ``Workspaces.resolve`` turns a key
from a browser back into a directory only if it names an existing run the caller may read.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import METHODS
from ..trainers.common import read_run_info

CLASS = "class"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def safe_name(name: str) -> str:
    """A student's name as one safe folder name: letters, digits, ``_ . -`` only, no leading dot, at most 64
    characters; a name that had to change gets a short hash of the original, so ``a/b`` and ``a_b`` stay apart.

    Raises:
        ValueError: an empty name.
    """
    name = str(name).strip()
    if not name:
        raise ValueError("A workspace needs a name")
    cleaned = _SAFE.sub("_", name).lstrip(".")[:48] or "_"
    if cleaned != name:
        cleaned += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return cleaned


def new_run_id() -> str:
    """``<UTC time>-<6 hex>``, e.g. ``20261126T151300Z-3fa9c1``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class RunRef:
    """One run: ``scope`` (``"class"`` or ``"students/<safe name>"``), ``method`` and ``run_id``; ``path`` is its
    directory."""

    scope: str
    method: str
    run_id: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.scope}/{self.method}/{self.run_id}"

    def info(self) -> dict:
        """``run_info.json`` (``{}`` while it is missing or being written)."""
        return read_run_info(self.path)

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    def has_adapter(self) -> bool:
        return (self.adapter / "adapter_config.json").is_file()

    def usable(self) -> bool:
        """Finished (completed, or stopped with what it learned) and with an adapter on disk."""
        return self.info().get("status") in ("completed", "stopped") and self.has_adapter()


class Workspaces:
    """The output folder's layout (module docstring). Creates folders on demand; never deletes anything."""

    def __init__(self, output_dir: str | Path):
        self.root = Path(output_dir)

    # files shared by the class
    @property
    def jobs_db(self) -> Path:
        return self.root / "jobs.sqlite"

    @property
    def arena_votes(self) -> Path:
        return self.root / "arena_votes.json"

    def scope(self, owner: str | None) -> str:
        """``"class"`` for None (the class models), else ``"students/<safe name>"``."""
        return CLASS if owner is None else f"students/{safe_name(owner)}"

    def dir(self, owner: str | None) -> Path:
        """The folder of the class (``owner`` None) or of one student: their reports and runs."""
        path = self.root / self.scope(owner)
        if self.root.resolve() not in path.resolve().parents:  # safe_name guarantees it; belt and braces
            raise ValueError("A workspace must stay inside the output folder")
        return path

    def new_run(self, owner: str | None, method: str) -> RunRef:
        """A fresh, not yet created run directory for ``owner``'s (None: the class's) ``method``."""
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}")
        run_id = new_run_id()
        return RunRef(self.scope(owner), method, run_id, self.dir(owner) / "runs" / method / run_id)

    def runs(self, owner: str | None, method: str | None = None) -> list[RunRef]:
        """The runs of the class (``owner`` None) or of a student, newest first (any status)."""
        base = self.dir(owner) / "runs"
        out = []
        for m in ([method] if method else METHODS):
            folder = base / m
            if folder.is_dir():
                out += [RunRef(self.scope(owner), m, p.name, p) for p in folder.iterdir()
                        if p.is_dir() and _RUN_ID.match(p.name)]
        return sorted(out, key=lambda r: r.run_id, reverse=True)

    def latest(self, owner: str | None, method: str) -> RunRef | None:
        """The newest usable run (``RunRef.usable``) of ``method`` in a workspace, or None."""
        return next((r for r in self.runs(owner, method) if r.usable()), None)

    def resolve(self, key: str, reader: str | None, is_teacher: bool = False) -> RunRef:
        """The run named ``key`` (``RunRef.key``), if it exists and ``reader`` may read it: class runs and the
        reader's own runs; a teacher reads everybody's.

        Raises:
            ValueError: a malformed key, a run that does not exist, or another student's run (one message for
            all three, so a key reveals nothing).
        """
        refused = ValueError("Unknown run: pick one from the list")
        if not isinstance(key, str) or len(key) > 200:
            raise refused
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == CLASS:
            scope, method, run_id = CLASS, parts[1], parts[2]
        elif len(parts) == 4 and parts[0] == "students":
            scope, method, run_id = f"students/{parts[1]}", parts[2], parts[3]
            own = reader is not None and safe_name(reader) == parts[1]
            if not (own or is_teacher) or safe_name(parts[1]) != parts[1]:
                raise refused
        else:
            raise refused
        if method not in METHODS or not _RUN_ID.match(run_id):
            raise refused
        path = self.root / scope / "runs" / method / run_id
        if not path.is_dir():
            raise refused
        return RunRef(scope, method, run_id, path)

    def owners(self) -> list[str]:
        """The safe names of every student workspace on disk."""
        base = self.root / "students"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
