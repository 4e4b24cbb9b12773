"""Preference annotations collected from students: schema, storage, undo, agreement, export.

Storage. Every acknowledged annotation is one row of an SQLite database (stdlib ``sqlite3``, WAL journal,
``synchronous=FULL``) next to the JSON file, ``collected_annotations.sqlite3``: a submit is acknowledged only
after its transaction commits, so a crash, a SIGKILL or a full disk never loses or half-writes an acknowledged
record, and a submit costs the same whether the class has 10 or 10,000 records. The course's file,
``collected_annotations.json`` (``{"version": 1, "annotations": [record, ...]}``, oldest first), is written
from the database by a background thread at most about ``export_delay`` seconds after a change, on ``flush()``,
at start-up and at interpreter exit; each write goes to one fixed temp file that is fsynced and
``os.replace``-d over the old file under a file lock, so the JSON on disk is always complete and temp files
cannot pile up. A JSON file from before the database existed is imported once (malformed records skipped and
counted).

A record::

    {"id": "9f...", "timestamp": "2026-11-24T10:00:00+00:00", "annotator": "ana",
     "item_id": "3c1e...",            # hash of prompt + responses: the same item seen by two annotators
     "mode": "pairwise" | "ranking",
     "prompt": "...", "responses": ["...", "..."], "category": "helpful", "source": "dataset" | "generated",
     "choice": "A" | "B" | "tie" | "both_bad" | "skip",   # pairwise
     "ranking": [2, 0, 1],                                  # ranking: response indices, best first
     "rationale": "..."}

Every field is checked on submit by ``AnnotationIn`` (pydantic, strict types, size limits): a record that
would break a reader for everybody (a list as ``item_id``, a ranking of 4,000 answers, a 1 MB rationale) is
refused with a message naming the field. ``alignment.data.annotations_to_pairs`` turns records into
chosen/rejected pairs (a ranking of K gives K(K-1)/2 pairs); the count is stored with each row, so statistics
never re-derive the pairs.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import re
import sqlite3
import threading
import uuid
import weakref
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator, model_validator

from .data.formats import MAX_RANKED, annotations_to_pairs

PAIRWISE_CHOICES = ("A", "B", "tie", "both_bad", "skip")
ANNOTATIONS_FILE = "collected_annotations.json"

# Size limits of a submitted record (characters unless said otherwise).
MAX_NAME = 64            # annotator names and categories
MAX_ID = 64              # item ids
MAX_TEXT = 8_000         # a prompt turn or one response
MAX_TURNS = 32           # messages in a conversation prompt
MAX_RATIONALE = 2_000
MIN_RANK_K, MAX_RANK_K = 3, MAX_RANKED   # answers in a ranking
NAME_PATTERN = re.compile(r"^[\w][\w .@'-]{0,63}$")  # letters/digits (any script), space, . @ ' -


class StoreBusy(RuntimeError):
    """The annotation database stayed locked longer than the store's busy timeout; nothing was saved."""


def item_id(prompt, responses: list[str]) -> str:
    """Stable id of an annotation item (same prompt and responses in the same order -> same id)."""
    h = hashlib.sha1(json.dumps([prompt, list(responses)], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()[:16]


def render_prompt(prompt) -> str:
    """A prompt (string or message list) as readable text: the last user turn, with earlier turns above it."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" if len(prompt) > 1 else m["content"] for m in prompt)


def check_annotator(name) -> str:
    """A valid annotator name (stripped), or ValueError saying what is wrong with it."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("Enter your name (annotator) before submitting")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise ValueError(f"Annotator name is too long ({MAX_NAME} characters at most)")
    if not NAME_PATTERN.match(name):
        raise ValueError("Annotator name may contain letters, digits, spaces and . @ ' - only")
    return name


def atomic_write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see ``atomic_write_text``)."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: ``<path>.tmp``, fsync, ``os.replace``.

    The temp name is fixed, so a writer killed mid-write leaves at most one temp file (replaced by the next
    write); callers hold the file's lock, so two writers never share it.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: StrictStr = Field(max_length=MAX_TEXT)


class AnnotationIn(BaseModel):
    """A submitted annotation, as the browser or an API client sends it (unknown keys are ignored).

    Strict types: ``item_id`` is a string, ``responses`` a list of strings (not one string), ``ranking`` a list of
    ints (``[0.9, 1.5, 2.1]`` and ``"012"`` are refused, never coerced). Pairwise: exactly 2 responses and a
    ``choice``; ranking: K = 3..6 responses and ``ranking``, a permutation of ``range(K)`` (best first).
    """

    model_config = ConfigDict(strict=True, extra="ignore")
    annotator: StrictStr
    prompt: StrictStr | list[Message]
    responses: list[StrictStr] = Field(min_length=2, max_length=MAX_RANK_K)
    item_id: StrictStr | None = Field(default=None, max_length=MAX_ID, pattern=r"^[\w-]*$")
    category: StrictStr | None = Field(default=None, max_length=MAX_NAME)
    source: Literal["dataset", "generated", "annotated"] | None = None
    choice: Literal[PAIRWISE_CHOICES] | None = None
    ranking: list[StrictInt] | None = Field(default=None, max_length=MAX_RANK_K)
    rationale: StrictStr | None = Field(default=None, max_length=MAX_RATIONALE)

    @field_validator("annotator")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_annotator(v)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("The item has no prompt: load an item first")
            if len(v) > MAX_TEXT:
                raise ValueError(f"The prompt is too long ({MAX_TEXT} characters at most)")
            return v.strip()
        if not v or len(v) > MAX_TURNS or not any(m.content.strip() for m in v):
            raise ValueError(f"A conversation prompt needs 1 to {MAX_TURNS} messages with some text")
        return v

    @field_validator("responses")
    @classmethod
    def _responses(cls, v: list[str]) -> list[str]:
        if any(len(r) > MAX_TEXT for r in v):
            raise ValueError(f"A response is too long ({MAX_TEXT} characters at most)")
        return v

    @model_validator(mode="after")
    def _mode(self):
        k = len(self.responses)
        if self.ranking is not None:
            if not MIN_RANK_K <= k <= MAX_RANK_K:
                raise ValueError(f"A ranking orders {MIN_RANK_K} to {MAX_RANK_K} responses; got {k}")
            if sorted(self.ranking) != list(range(k)):
                raise ValueError(f"ranking must be a permutation of 0..{k - 1} (every response exactly once, "
                                 f"best first); got {self.ranking}")
        else:
            if self.choice is None:
                raise ValueError(f"Choice must be one of {', '.join(PAIRWISE_CHOICES)}")
            if k != 2:
                raise ValueError("A pairwise annotation compares exactly two responses")
        return self


def _message(exc: ValidationError) -> str:
    """One readable line per problem: our own checks as they are, type and size errors as ``field: problem``."""
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        where = ".".join(str(x) for x in err["loc"])
        parts.append(msg if err["type"] == "value_error" or not where else f"{where}: {msg}")
    return "; ".join(dict.fromkeys(parts))


def validate_record(rec) -> dict:
    """Check a submitted annotation and return its canonical form (without id/timestamp).

    Raises:
        ValueError: not an object, a field of the wrong type or size, an invalid name, an empty prompt, a
            pairwise record without a valid choice or with other than 2 responses, or a ranking that is not a
            permutation of the 3..6 response indices (the message names the field and the problem).
    """
    if not isinstance(rec, dict):
        raise ValueError("An annotation must be a JSON object")
    try:
        a = AnnotationIn.model_validate(rec)
    except ValidationError as exc:
        raise ValueError(_message(exc)) from None
    prompt = a.prompt if isinstance(a.prompt, str) else [m.model_dump() for m in a.prompt]
    out = {"annotator": a.annotator, "item_id": a.item_id or item_id(prompt, a.responses), "prompt": prompt,
           "responses": a.responses, "category": (a.category or "").strip() or "annotated",
           "source": a.source or "dataset", "rationale": (a.rationale or "").strip()}
    if a.ranking is not None:
        out.update(mode="ranking", ranking=a.ranking)
    else:
        out.update(mode="pairwise", choice=a.choice)
    return out


def pairs_in(rec: dict) -> int:
    """Chosen/rejected pairs a valid record yields: K(K-1)/2 for a ranking, 1 for A/B, 0 otherwise."""
    if rec.get("mode") == "ranking":
        k = len(rec["ranking"])
        return k * (k - 1) // 2
    return int(rec.get("choice") in ("A", "B"))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT    NOT NULL UNIQUE,
    annotator TEXT    NOT NULL,
    item_id   TEXT    NOT NULL,
    n_pairs   INTEGER NOT NULL,
    record    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_by_annotator ON annotations (annotator, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class AnnotationStore:
    """The class's annotations: SQLite rows (the truth) and ``collected_annotations.json`` (their export).

    Args:
        path: the JSON file; the database is ``path`` with suffix ``.sqlite3`` (both in the same folder, which
            is created).
        busy_timeout: seconds a write waits for another writer before ``StoreBusy``.
        export_delay: the JSON file follows the database this many seconds after a change (debounced).

    Raises:
        ValueError: the JSON file exists, the database is new, and the file is not an annotations file (it is
            never overwritten then).
    """

    def __init__(self, path: str | Path = ANNOTATIONS_FILE, busy_timeout: float = 10.0, export_delay: float = 1.0):
        self.path = Path(path)
        self.db_path = self.path.with_suffix(".sqlite3")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout, self.export_delay = busy_timeout, export_delay
        self.lock = FileLock(str(self.path) + ".lock", timeout=60)  # guards the JSON file and its temp file
        self._local = threading.local()
        self._dirty = threading.Event()
        self._closed = False
        self.skipped_on_import = 0
        self.backups: list[Path] = []  # copies of a changed JSON file made before an export replaced it
        self._last_export: tuple[int, int] | None = None  # (mtime_ns, size) of the file this store last wrote
        with self.lock:
            for stale in self.path.parent.glob(self.path.name + ".*tmp"):  # left by killed writers
                stale.unlink(missing_ok=True)
        with self._conn() as c:
            c.executescript(_SCHEMA)
        self._import_legacy_json()
        self.flush()
        self._exporter = threading.Thread(target=_export_loop, args=(weakref.ref(self),), daemon=True,
                                          name="annotation-export")
        self._exporter.start()
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -------------------------------------------------------------------------------- database
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are per thread)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def _write(self, fn):
        """Run ``fn(conn)`` in one IMMEDIATE transaction; raises ``StoreBusy`` if the database stays locked."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy("The annotation store is busy right now; nothing was saved, try again in a moment") from exc
            raise
        self._dirty.set()
        return out

    def _import_legacy_json(self) -> None:
        """Import ``collected_annotations.json`` once into a new database; malformed records are counted."""
        conn = self._conn()
        if conn.execute("SELECT value FROM meta WHERE key='imported'").fetchone() or not self.path.is_file():
            self._write(lambda c: c.execute("INSERT OR IGNORE INTO meta VALUES ('imported', '1')"))
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path.name} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                             "fix or move it, it was not modified") from exc
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise ValueError(f"{self.path.name} is not an annotations file (expected an object with 'annotations')")
        rows, skipped = [], 0
        for rec in data["annotations"]:
            try:
                clean = validate_record(rec)
                rid = rec.get("id") if isinstance(rec.get("id"), str) and len(rec["id"]) <= MAX_ID else uuid.uuid4().hex
                ts = rec.get("timestamp") if isinstance(rec.get("timestamp"), str) else _now()
                rows.append({"id": rid, "timestamp": ts[:40], **clean})
            except ValueError:
                skipped += 1
        self.skipped_on_import = skipped

        def insert(c):
            for r in rows:
                c.execute("INSERT OR IGNORE INTO annotations (id, annotator, item_id, n_pairs, record) VALUES (?,?,?,?,?)",
                          (r["id"], r["annotator"], r["item_id"], pairs_in(r), json.dumps(r, ensure_ascii=False)))
            c.execute("INSERT OR REPLACE INTO meta VALUES ('imported', '1')")

        self._write(insert)

    def _select(self, sql: str, args=()) -> list[dict]:
        """Records from ``SELECT record ...``; a row that is not valid JSON is skipped, never fatal."""
        out = []
        for (text,) in self._conn().execute(sql, args):
            try:
                out.append(json.loads(text))
            except (TypeError, json.JSONDecodeError):
                continue
        return out

    # -------------------------------------------------------------------------------- API
    def add(self, rec: dict) -> dict:
        """Validate, stamp (id, UTC timestamp) and store one record; returns it once it is committed.

        Raises:
            ValueError: invalid record (see ``validate_record``).
            StoreBusy: the database stayed locked for ``busy_timeout`` seconds (nothing saved).
        """
        stored = {"id": uuid.uuid4().hex, "timestamp": _now(), **validate_record(rec)}
        self._write(lambda c: c.execute(
            "INSERT INTO annotations (id, annotator, item_id, n_pairs, record) VALUES (?,?,?,?,?)",
            (stored["id"], stored["annotator"], stored["item_id"], pairs_in(stored), json.dumps(stored, ensure_ascii=False))))
        return stored

    def undo_last(self, annotator: str) -> dict | None:
        """Remove ``annotator``'s most recent record (only their own); returns it, or None if they have none."""
        def pop(c):
            row = c.execute("SELECT seq, record FROM annotations WHERE annotator=? ORDER BY seq DESC LIMIT 1",
                            (annotator,)).fetchone()
            if row is not None:
                c.execute("DELETE FROM annotations WHERE seq=?", (row[0],))
            return row
        row = self._write(pop)
        return json.loads(row[1]) if row else None

    def records(self) -> list[dict]:
        """All records, oldest first."""
        return self._select("SELECT record FROM annotations ORDER BY seq")

    def history(self, annotator: str, limit: int | None = None) -> list[dict]:
        """``annotator``'s records, newest first (at most ``limit``)."""
        return self._select("SELECT record FROM annotations WHERE annotator=? ORDER BY seq DESC LIMIT ?",
                            (annotator, -1 if limit is None else limit))

    def done_items(self, annotator: str) -> set[str]:
        return {r for (r,) in self._conn().execute("SELECT item_id FROM annotations WHERE annotator=?", (annotator,))}

    def counts(self) -> dict[str, int]:
        """Records per annotator."""
        return dict(self._conn().execute("SELECT annotator, count(*) FROM annotations GROUP BY annotator").fetchall())

    def version(self) -> tuple[int, int]:
        """Changes whenever a record is added or removed: (record count, highest row number)."""
        return tuple(self._conn().execute("SELECT count(*), coalesce(max(seq), 0) FROM annotations").fetchone())

    def total(self) -> int:
        return self._conn().execute("SELECT count(*) FROM annotations").fetchone()[0]

    def n_pairs(self) -> int:
        """Chosen/rejected pairs derivable from every record (stored per record, never re-derived)."""
        return self._conn().execute("SELECT coalesce(sum(n_pairs), 0) FROM annotations").fetchone()[0]

    def to_pairs(self) -> list[dict]:
        """Chosen/rejected rows derived from every record (see ``annotations_to_pairs``)."""
        return annotations_to_pairs(self.records())

    def export_trl(self, path: str | Path) -> tuple[Path, int]:
        """Write the derived pairs as TRL's explicit-prompt preference format (JSONL of prompt/chosen/rejected)."""
        rows = self.to_pairs()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
                                    "category": r["category"]}, ensure_ascii=False) + "\n")
        return path, len(rows)

    def flush(self) -> Path:
        """Write ``collected_annotations.json`` from the database now; returns its path.

        The stored JSON texts are written as they are (validated when stored), not parsed and re-serialised:
        the export of a few thousand records costs milliseconds of the server's time, not tens of them."""
        with self.lock:  # snapshot and write as one step: a concurrent flush never writes an older snapshot last
            self._dirty.clear()
            texts = [t for (t,) in self._conn().execute("SELECT record FROM annotations ORDER BY seq")]
            body = ('{"version": 1, "annotations": [\n' + ",\n".join(texts) + "\n]}\n" if texts
                    else '{"version": 1, "annotations": []}\n')
            self._keep_foreign_edits(body, texts)
            atomic_write_text(self.path, body)
            st = self.path.stat()
            self._last_export = (st.st_mtime_ns, st.st_size)
        return self.path

    def _keep_foreign_edits(self, body: str, texts: list[str]) -> None:
        """Before the export replaces ``collected_annotations.json``: if the file changed since this store last
        wrote it and holds anything the database does not (a hand edit, a restored copy, the file the database
        was first imported from, records refused on import), copy it to
        ``collected_annotations.backup-<UTC time>.json``, so that nothing is lost silently. A file that is only an
        older export (the writer was killed before its next export) is simply replaced."""
        if not self.path.is_file():
            return
        st = self.path.stat()
        if (st.st_mtime_ns, st.st_size) == self._last_export:
            return
        old = self.path.read_text(encoding="utf-8", errors="replace")
        if old == body:
            return
        try:
            ours = {r["id"]: r for r in map(json.loads, texts)}
            stale = all(isinstance(r, dict) and ours.get(r.get("id")) == r for r in json.loads(old)["annotations"])
        except (ValueError, TypeError, KeyError):
            stale = False
        if not stale:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            backup = self.path.with_name(f"{self.path.stem}.backup-{stamp}.json")
            backup.write_text(old, encoding="utf-8")
            self.backups.append(backup)

    def close(self) -> None:
        """Flush the JSON file and stop the export thread (the store stays readable)."""
        self._closed = True
        self._dirty.set()
        self._exporter.join(timeout=5)
        self.flush()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _export_loop(ref) -> None:
    """Background JSON export: wait for a change, let writes coalesce for ``export_delay`` s, write once."""
    while True:
        store = ref()
        if store is None or store._closed:
            return
        dirty, delay = store._dirty, store.export_delay
        del store
        if not dirty.wait(timeout=1.0):
            continue
        threading.Event().wait(delay)
        store = ref()
        if store is None or store._closed:
            return
        try:
            store.flush()
        except Exception:  # a failed export is retried on the next change or flush; the database holds the data
            pass
        del store


def _flush_at_exit(ref) -> None:
    store = ref()
    if store is not None and not store._closed:
        try:
            store.flush()
        except Exception:
            pass


def agreement(records: list[dict]) -> dict:
    """Inter-annotator agreement on items annotated by more than one person.

    Pairwise records (skips excluded; labels A, B, tie, both_bad are nominal):
      * Cohen's kappa for every pair of annotators on their shared items (Cohen 1960),
        kappa = (p_o - p_e) / (1 - p_e), via ``sklearn.metrics.cohen_kappa_score``;
      * Krippendorff's alpha (nominal) over all shared items and annotators (Krippendorff 2011),
        alpha = 1 - D_o / D_e, via the ``krippendorff`` package.
    Ranking records: Krippendorff's alpha (ordinal) with one unit per (item, response) and the rank as value.

    Returns:
        ``{"pairwise": {"shared_items", "alpha", "kappa": [{"annotators", "n_items", "kappa"}]},
        "ranking": {"shared_items", "alpha"}}``; a statistic is None when undefined (too few shared items, or
        no variation at all).
    """
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    labels = {c: i for i, c in enumerate(PAIRWISE_CHOICES[:-1])}
    pair_votes: dict[str, dict[str, str]] = defaultdict(dict)  # item -> annotator -> label (last wins)
    rank_votes: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for r in records:
        if r.get("mode") == "ranking" and r.get("ranking"):
            rank_votes[r["item_id"]][r["annotator"]] = r["ranking"]
        elif r.get("choice") in labels:
            pair_votes[r["item_id"]][r["annotator"]] = r["choice"]

    def _alpha(matrix, level):
        values = np.asarray(matrix, dtype=float)
        if values.shape[1] == 0 or len(np.unique(values[~np.isnan(values)])) < 2:
            return None
        try:
            return float(krippendorff.alpha(reliability_data=values, level_of_measurement=level))
        except (ValueError, ZeroDivisionError):
            return None

    shared = {i: v for i, v in pair_votes.items() if len(v) > 1}
    annotators = sorted({a for v in shared.values() for a in v})
    kappas = []
    for a, b in itertools.combinations(annotators, 2):
        items = [i for i, v in shared.items() if a in v and b in v]
        if len(items) < 2:
            continue
        ya, yb = [shared[i][a] for i in items], [shared[i][b] for i in items]
        k = None if len(set(ya) | set(yb)) < 2 else float(cohen_kappa_score(ya, yb))
        kappas.append({"annotators": [a, b], "n_items": len(items), "kappa": k})
    matrix = [[labels[shared[i][a]] if a in shared[i] else np.nan for i in shared] for a in annotators]
    pairwise = {"shared_items": len(shared), "alpha": _alpha(matrix, "nominal") if shared else None, "kappa": kappas}

    rshared = {i: v for i, v in rank_votes.items() if len(v) > 1}
    rannotators = sorted({a for v in rshared.values() for a in v})
    units = []  # one column per (item, response): the rank each annotator gave it
    for i, votes in rshared.items():
        k = len(next(iter(votes.values())))
        for resp in range(k):
            units.append([votes[a].index(resp) + 1 if a in votes else np.nan for a in rannotators])
    rmatrix = np.asarray(units, dtype=float).T if units else np.zeros((0, 0))
    ranking = {"shared_items": len(rshared), "alpha": _alpha(rmatrix, "ordinal") if units else None}
    return {"pairwise": pairwise, "ranking": ranking}
