"""The dispatcher: starts queued jobs on a backend as workers free up, watches them, stops and reaps them.

One daemon thread in the server, polling every ``poll_s``: it asks the queue for the next job in fair order
while fewer than ``workers`` jobs run, prepares its spec (``prepare``: the run directory and the reward model,
decided when the job starts, not when it was queued), starts it on the backend, and records how each job ended.

How a job ends:
    - its ``run_info.json`` says ``completed`` / ``stopped`` / ``failed``: that state;
    - Stop (``JobQueue.request_stop``): ``STOP`` appears in the run directory, the trainer ends at its next stop
      check; a job still running ``stop_grace_s`` later is killed and recorded ``stopped`` (its run directory
      says so, with the steps it finished and no adapter if it had not saved one);
    - the process died (a crash, ``os._exit``, an out-of-memory SIGKILL): ``failed``, with what ended it and the
      log tail in ``error.log``; the server keeps serving and the next job starts.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..trainers.common import read_metrics, read_run_info, write_json
from .worker import log_tail

logger = logging.getLogger("class7")
FINAL = ("completed", "stopped", "failed")


def close_run_dir(run_dir: Path, method: str, status: str, error: str | None = None) -> None:
    """Leave a valid run directory for a job that ended without writing its final ``run_info.json``
    (killed, crashed, or interrupted by a server restart): ``status``, the steps it finished, the error."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    info = read_run_info(run_dir)
    if info.get("status") in FINAL:
        return
    history = read_metrics(run_dir / "metrics.jsonl")
    info.update(method=info.get("method", method), status=status,
                steps_done=history[-1]["step"] if history else 0,
                train_time_s=history[-1].get("elapsed_s") if history else None)
    if error:
        info["error"] = error
        tail = "\n".join(log_tail(run_dir, 30))
        (run_dir / "error.log").write_text(f"{error}\n\nlast lines of worker.log:\n{tail}\n", encoding="utf-8")
    write_json(run_dir / "run_info.json", info)


class Dispatcher:
    """Runs the queue's jobs on ``backend`` (see the module docstring).

    Args:
        queue: the ``JobQueue``.
        backend: ``LocalProcessBackend`` or ``RayBackend``.
        prepare: ``prepare(job) -> spec``: the spec the worker gets (run directory created, reward model chosen);
            an exception fails the job with its message.
        workers: jobs running at once.
        poll_s: how often it looks; stop_grace_s: how long a stopping job may take before it is killed.
    """

    def __init__(self, queue, backend, prepare, workers: int = 1, poll_s: float = 0.2, stop_grace_s: float = 1.4):
        self.queue, self.backend, self.prepare = queue, backend, prepare
        self.workers, self.poll_s, self.stop_grace_s = workers, poll_s, stop_grace_s
        self.active: dict[int, dict] = {}  # job id -> {"handle", "run_dir", "method", "killed"}
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self) -> "Dispatcher":
        """Mark jobs of a server that died as ``interrupted`` (their run directories kept and closed; a job whose
        run had already ended keeps the state its ``run_info.json`` records), then start the polling thread."""
        for job in self.queue.running():
            info = read_run_info(job["run_dir"]) if job.get("run_dir") else {}
            if info.get("status") in FINAL:
                self.queue.finish(job["id"], info["status"], info.get("error"))
        for job_id in self.queue.recover():
            job = self.queue.get(job_id)
            if job.get("run_dir"):
                close_run_dir(Path(job["run_dir"]), job["method"], "interrupted")
        self.thread = threading.Thread(target=self._loop, name="job-dispatcher", daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop polling and kill running jobs (the server is shutting down)."""
        self._closed.set()
        if self.thread is not None:
            self.thread.join(5)
        with self._lock:
            for job_id, a in list(self.active.items()):
                self.backend.kill(a["handle"])
                close_run_dir(a["run_dir"], a["method"], "interrupted")
                self.queue.finish(job_id, "interrupted", "the server stopped while this job ran")
            self.active.clear()

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive any one job's trouble
                logger.exception("dispatcher tick failed")
            self._closed.wait(self.poll_s)

    def tick(self) -> None:
        """One round: reap ended jobs, carry out stop requests, start queued jobs into free slots."""
        with self._lock:
            now = time.time()
            for job_id, a in list(self.active.items()):
                if self.backend.done(a["handle"]):
                    self._reap(job_id, a)
                    continue
                requested = self.queue.get(job_id).get("stop_requested_at")
                if requested:
                    if a["run_dir"].is_dir():  # a Ray task still waiting for resources has no directory yet
                        (a["run_dir"] / "STOP").touch()
                    if now - requested >= self.stop_grace_s and not a["killed"]:
                        a["killed"] = True
                        self.backend.kill(a["handle"])
                        self._reap(job_id, a)
            while len(self.active) < self.workers:
                job = self.queue.claim_next(worker=self.backend.name)
                if job is None:
                    break
                self._launch(job)

    def _launch(self, job: dict) -> None:
        try:
            spec = self.prepare(job)
            run_dir = Path(spec["run_dir"])
            self.queue.set_run_dir(job["id"], str(run_dir))
            handle = self.backend.start(spec)
        except Exception as exc:  # noqa: BLE001 - e.g. no reward model for PPO: the job fails, the queue goes on
            logger.warning("job %s could not start: %s", job["id"], exc)
            self.queue.finish(job["id"], "failed", f"{type(exc).__name__}: {exc}")
            return
        self.active[job["id"]] = {"handle": handle, "run_dir": run_dir, "method": job["method"], "killed": False}
        logger.info("job %s started: %s for %s in %s", job["id"], job["method"], job["owner"], run_dir)

    def _reap(self, job_id: int, a: dict) -> None:
        self.active.pop(job_id, None)
        ended_by = None if a["killed"] else self.backend.outcome(a["handle"])
        info = read_run_info(a["run_dir"])
        if a["killed"]:
            close_run_dir(a["run_dir"], a["method"], "stopped")
            state, error = "stopped", None
        elif info.get("status") in FINAL:
            state, error = info["status"], info.get("error")
        else:
            error = f"the worker process ended without a result ({ended_by or 'no exit status'})"
            close_run_dir(a["run_dir"], a["method"], "failed", error)
            state = "failed"
        self.queue.finish(job_id, state, error)
        logger.info("job %s %s%s", job_id, state, f": {error}" if error else "")

    def running_ids(self) -> list[int]:
        with self._lock:
            return list(self.active)
