"""A persistent, fair queue of training jobs for a class (stdlib ``sqlite3``, one row per job).

The database survives a server restart: ``JobQueue.recover()`` marks the jobs that were running when the server
died as ``interrupted`` (a student can requeue them) and leaves queued jobs queued. The queue is a plain store:
who may cancel or requeue which job is checked by the caller.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

STATES = ("queued", "running", "completed", "stopped", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
FINISHED = ("completed", "stopped", "failed", "interrupted")  # states ``finish`` may set
REQUEUABLE = ("interrupted", "failed", "stopped")
INTERRUPTED_ERROR = "the server stopped while this job ran"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, method TEXT NOT NULL, spec TEXT NOT NULL,
    state TEXT NOT NULL, run_dir TEXT, submitted_at REAL NOT NULL, started_at REAL, finished_at REAL,
    error TEXT, stop_requested_at REAL, worker TEXT, total_steps INTEGER, label TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, id);
"""

# Queued jobs in the order they start: see the JobQueue docstring. NULLs sort first in SQLite (never served).
_ORDER_SQL = """
SELECT j.*, row_number() OVER (PARTITION BY j.owner ORDER BY j.id) - 1 AS round,
       (SELECT max(s.started_at) FROM jobs s WHERE s.owner = j.owner) AS last_served
FROM jobs j WHERE j.state = 'queued'
ORDER BY round, last_served, j.id
"""


class QueueFull(ValueError):
    """The owner already has ``max_waiting_per_owner`` jobs waiting; nothing was queued."""


class JobNotFound(LookupError):
    """No job has this id."""


class JobQueue:
    """The class's training jobs, in an SQLite database (WAL journal, ``synchronous=FULL``), safe across threads.

    Fair queue (round-robin across students). Every student's waiting jobs are numbered 0, 1, 2, ... in the
    order they were submitted; a student's job number k is in round k. All round-0 jobs start before any
    round-1 job, and so on, so one student's second training never starts before another student's first one.
    Within a round, the student who was served longest ago goes first (a student whose job has never started
    goes before everybody), then the earlier submission. So if A, B and C each submit two jobs in the order
    A1 A2 B1 B2 C1 C2, they start A1 B1 C1 A2 B2 C2; and when A's job has just started, a job B queues now
    starts before A's next one. Each student may have at most ``max_waiting_per_owner`` jobs waiting (the
    running one does not count).

    Args:
        path: the database file (its folder is created).
        max_waiting_per_owner: queued jobs one owner may have at a time.
        busy_timeout: seconds a write waits for another writer before ``sqlite3.OperationalError``.
    """

    def __init__(self, path: str | Path, max_waiting_per_owner: int = 2, busy_timeout: float = 10.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_waiting_per_owner = max_waiting_per_owner
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once, every later connection uses it
        conn.executescript(_SCHEMA)

    # -------------------------------------------------------------------------------- database
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections are per thread)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def _write(self, fn):
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction and return its result."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return out

    def _order(self, conn) -> list[dict]:
        return [_job(r, position=i) for i, r in enumerate(conn.execute(_ORDER_SQL).fetchall(), 1)]

    def _row(self, conn, job_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"There is no training job {job_id}")
        return row

    def _update(self, job_id: int, change) -> dict:
        """Apply ``change(conn, row)`` to one job in a transaction; return the job as it is afterwards."""
        self._write(lambda c: change(c, self._row(c, job_id)))
        return self.get(job_id)

    # -------------------------------------------------------------------------------- writes
    def recover(self) -> list[int]:
        """Mark every job still ``running`` (the server died under it) ``interrupted``; call once at start-up.

        Returns:
            the ids of the interrupted jobs. Queued jobs stay queued.
        """
        def fix(c):
            ids = [r["id"] for r in c.execute("SELECT id FROM jobs WHERE state='running' ORDER BY id")]
            c.execute("UPDATE jobs SET state='interrupted', finished_at=?, error=? WHERE state='running'",
                      (time.time(), INTERRUPTED_ERROR))
            return ids
        return self._write(fix)

    def submit(self, owner: str, method: str, spec: dict, total_steps: int | None = None, label: str = "") -> dict:
        """Queue a training job.

        Args:
            owner: the student; method: the training method (e.g. ``"dpo"``); spec: its JSON-serialisable
                settings; total_steps: for progress and time estimates; label: a name shown in the queue.

        Returns:
            the new job's dict (state ``queued``, with its ``position``).

        Raises:
            QueueFull: the owner already has ``max_waiting_per_owner`` queued jobs.
            TypeError: ``spec`` is not JSON-serialisable.
        """
        spec_text = json.dumps(spec, ensure_ascii=False)

        def insert(c):
            (waiting,) = c.execute("SELECT count(*) FROM jobs WHERE owner=? AND state='queued'", (owner,)).fetchone()
            if waiting >= self.max_waiting_per_owner:
                n = self.max_waiting_per_owner
                raise QueueFull(f"You already have {n} training{'s' if n != 1 else ''} waiting; wait until one "
                                f"starts or cancel one before queuing another")
            return c.execute("INSERT INTO jobs (owner, method, spec, state, submitted_at, total_steps, label) "
                             "VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                             (owner, method, spec_text, time.time(), total_steps, label or "")).lastrowid
        return self.get(self._write(insert))

    def claim_next(self, worker: str = "") -> dict | None:
        """Atomically take the next queued job in fair order and mark it ``running`` (``started_at``, ``worker``).

        Returns:
            the claimed job's dict, or None when nothing is queued.
        """
        def claim(c):
            row = c.execute(_ORDER_SQL + " LIMIT 1").fetchone()
            if row is None:
                return None
            # started_at strictly increases (even if the clock steps back), so "served longest ago" is never a tie.
            (last,) = c.execute("SELECT max(started_at) FROM jobs").fetchone()
            now = time.time() if last is None else max(time.time(), last + 1e-6)
            c.execute("UPDATE jobs SET state='running', started_at=?, worker=? WHERE id=?", (now, worker, row["id"]))
            return row["id"]
        job_id = self._write(claim)
        return None if job_id is None else self.get(job_id)

    def set_run_dir(self, job_id: int, run_dir: str) -> None:
        """Record the folder a job writes its run to. Raises JobNotFound."""
        self._update(job_id, lambda c, r: c.execute("UPDATE jobs SET run_dir=? WHERE id=?", (str(run_dir), r["id"])))

    def finish(self, job_id: int, state: str, error: str | None = None) -> dict:
        """End a running job in ``state`` (completed, stopped, failed or interrupted), setting ``finished_at``.

        A job that is not running (already finished, or cancelled) is returned unchanged, so a second call keeps
        the first state.

        Returns:
            the job's dict. Raises ValueError for another state, JobNotFound for an unknown id.
        """
        if state not in FINISHED:
            raise ValueError(f"a job can finish as {', '.join(FINISHED)}, not {state!r}")
        return self._update(job_id, lambda c, r: c.execute(
            "UPDATE jobs SET state=?, error=?, finished_at=? WHERE id=? AND state='running'",
            (state, error, time.time(), r["id"])))

    def request_stop(self, job_id: int) -> dict:
        """Ask a running job to stop (sets ``stop_requested_at`` once; the dispatcher ends the job).

        Returns the job's dict (unchanged unless it is running). Raises JobNotFound.
        """
        return self._update(job_id, lambda c, r: c.execute(
            "UPDATE jobs SET stop_requested_at=? WHERE id=? AND state='running' AND stop_requested_at IS NULL",
            (time.time(), r["id"])))

    def cancel(self, job_id: int) -> dict:
        """Cancel a job: queued -> ``cancelled``; running -> ``request_stop``; finished -> unchanged.

        Returns the job's dict. Raises JobNotFound.
        """
        job = self._update(job_id, lambda c, r: c.execute(
            "UPDATE jobs SET state='cancelled', finished_at=? WHERE id=? AND state='queued'", (time.time(), r["id"])))
        return self.request_stop(job_id) if job["state"] == "running" else job

    def requeue(self, job_id: int) -> dict:
        """Queue an interrupted, failed or stopped job again as a NEW job (same owner, method, spec, label).

        Returns:
            the new job's dict.

        Raises:
            ValueError: the job is in another state. QueueFull: the owner's waiting limit. JobNotFound.
        """
        old = self.get(job_id)
        if old["state"] not in REQUEUABLE:
            raise ValueError("only an interrupted, failed or stopped job can be requeued")
        return self.submit(old["owner"], old["method"], old["spec"], old["total_steps"], old["label"])

    # -------------------------------------------------------------------------------- reads
    def order(self) -> list[dict]:
        """The queued jobs in the order they will start, each with ``position`` 1..n."""
        return self._order(self._conn())

    def get(self, job_id: int) -> dict:
        """One job's dict (``position`` set if it is queued). Raises JobNotFound."""
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot for the row and the queue order
        try:
            row = self._row(conn, job_id)
            pos = {j["id"]: j["position"] for j in self._order(conn)} if row["state"] == "queued" else {}
        finally:
            conn.execute("COMMIT")
        return _job(row, pos.get(job_id))

    def jobs(self, owner: str | None = None, limit: int = 50) -> list[dict]:
        """The latest ``limit`` jobs, newest first, of ``owner`` (None: everybody's); queued ones carry ``position``."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            where, args = ("WHERE owner=?", (owner,)) if owner is not None else ("", ())
            rows = conn.execute(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
            pos = {j["id"]: j["position"] for j in self._order(conn)}
        finally:
            conn.execute("COMMIT")
        return [_job(r, pos.get(r["id"])) for r in rows]

    def running(self) -> list[dict]:
        """The running jobs, oldest first."""
        return [_job(r) for r in self._conn().execute("SELECT * FROM jobs WHERE state='running' ORDER BY id")]

    def durations(self, method: str, limit: int = 10) -> list[float]:
        """Seconds (``finished_at - started_at``) of the last ``limit`` completed jobs of ``method``, newest first."""
        rows = self._conn().execute(
            "SELECT finished_at - started_at FROM jobs WHERE method=? AND state='completed' AND started_at IS NOT NULL"
            " ORDER BY finished_at DESC LIMIT ?", (method, limit))
        return [float(d) for (d,) in rows]

    def counts(self) -> dict:
        """Number of jobs in each state, ``{state: n}`` (every state of ``STATES``, 0 if none)."""
        out = dict.fromkeys(STATES, 0)
        out.update({s: n for s, n in self._conn().execute("SELECT state, count(*) FROM jobs GROUP BY state")})
        return out


def _job(row: sqlite3.Row, position: int | None = None) -> dict:
    """A job row as a dict: every column, ``spec`` parsed, ``position`` and ``stop_requested``."""
    job = {k: row[k] for k in row.keys() if k not in ("round", "last_served")}
    job["spec"] = json.loads(job["spec"])
    job["position"] = position
    job["stop_requested"] = job["stop_requested_at"] is not None
    return job
