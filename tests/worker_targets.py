"""Stand-ins for ``alignment.serving.worker.run_job`` that the worker tests run in real worker processes (or Ray
tasks): the same run-directory protocol (``RunContext``, ``progress.json``, ``worker.log``) without torch training.

Each takes the worker's plain spec (at least ``run_dir``, ``method``, ``job_id``) and is named on a backend as
``"tests.worker_targets:<name>"`` (the child has the project root on its path; ``tests`` is a namespace package).
``route`` runs the target named by ``spec["target"]``, so one dispatcher can run a crash and then a good job.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from alignment.serving.worker import FileProgress, _log_to
from alignment.trainers.common import RunContext

log = logging.getLogger("class7")
FOREVER_S = 600  # "forever": longer than any test; the test (or the dispatcher) ends the process first


def _start(spec: dict, total_steps: int = 2):
    """What run_job does before training: log to worker.log, progress.json, a RunContext (run_info: running);
    also writes the process id to ``run_dir/pid``."""
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _log_to(run_dir)
    progress = FileProgress(run_dir, spec["method"], total_steps)
    ctx = RunContext(run_dir, spec["method"], total_steps, on_progress=progress)
    tmp = run_dir / "pid.tmp"  # this process's pid, for the tests (written atomically)
    tmp.write_text(str(os.getpid()))
    tmp.replace(run_dir / "pid")
    log.info("job %s: %s target started (pid %d)", spec.get("job_id"), spec.get("target", "?"), os.getpid())
    return ctx, handler


def _end(handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()


def ok(spec: dict) -> dict:
    """Two logged steps, then ``run_info.json`` status completed."""
    ctx, handler = _start(spec)
    try:
        for step in (1, 2):
            ctx.phase("update", step)
            ctx.log(step, {"loss": 1.0 / step})
        info = ctx.finish()
        log.info("job %s: %s", spec.get("job_id"), info["status"])
        return info
    finally:
        _end(handler)


def crash(spec: dict) -> None:
    """One logged step, a log line, then the process dies inside the "training" (``os._exit(3)``)."""
    ctx, _ = _start(spec)
    ctx.log(1, {"loss": 1.0})
    log.info("job %s: CRASH-MARKER about to die with exit code 3", spec.get("job_id"))
    os._exit(3)


def hang(spec: dict) -> None:
    """One logged step, then sleeps forever without ever checking STOP (only terminating it ends it)."""
    ctx, _ = _start(spec)
    ctx.phase("update", 1)
    ctx.log(1, {"loss": 1.0})
    log.info("job %s: hanging", spec.get("job_id"))
    time.sleep(FOREVER_S)


def slow_graceful(spec: dict) -> dict:
    """Logs a step every 0.05 s and checks ``ctx.should_stop()`` after each, like a trainer; ends ``stopped``
    (``run_info.json`` then has ``"ended": "graceful"``, which only this clean exit writes)."""
    ctx, handler = _start(spec, total_steps=100_000)
    try:
        step, deadline = 0, time.time() + FOREVER_S
        while time.time() < deadline:
            step += 1
            ctx.log(step, {"loss": 1.0})
            if ctx.should_stop():
                break
            time.sleep(0.05)
        info = ctx.finish(ended="graceful")
        log.info("job %s: %s after %d steps", spec.get("job_id"), info["status"], step)
        return info
    finally:
        _end(handler)


def sleeper(spec: dict) -> None:
    """Writes its pid to ``run_dir/pid`` (``_start``), logs a step and sleeps: the test kills it."""
    ctx, _ = _start(spec)
    ctx.log(1, {"loss": 1.0})
    time.sleep(FOREVER_S)


def route(spec: dict):
    """Run the target named by ``spec["target"]`` (one of the functions above)."""
    target = spec["target"]
    if target not in ("ok", "crash", "hang", "slow_graceful", "sleeper"):
        raise ValueError(f"unknown target {target!r}")
    return globals()[target](spec)
