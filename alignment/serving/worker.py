"""What a worker process (or a Ray task) runs: one queued training job, start to end.

``run_job(spec)`` rebuilds the session from plain values, loads the job's dataset, and calls
``alignment.pipeline.train_run`` into the job's run directory. Everything it reports goes through files in that
directory, which the server reads (LLaMA-Factory's runner does the same through its trainer log):

    metrics.jsonl   one line per logged step (``RunContext``)
    progress.json   step, total, current phase and when it began, measured step times (``FileProgress``)
    worker.log      the process's log (the Train tab's log tail)
    run_info.json   the final status; the dispatcher rewrites it if the process died before writing it

Stop: the dispatcher creates ``STOP`` in the run directory, which ``RunContext.should_stop`` checks at every
step end (PPO also between sampled tokens and phases); the dispatcher terminates the process if it is still
running after a grace period. The spec is plain JSON, so the same function runs in a spawned process and as a
Ray task on another machine (``alignment.serving.backends``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from ..jobs import ProgressTracker
from ..trainers.common import write_json

PROGRESS_FILE = "progress.json"
LOG_FILE = "worker.log"


class FileProgress(ProgressTracker):
    """A ``ProgressTracker`` that also writes its state to ``progress.json`` after every step and phase (atomic
    rename, a few hundred bytes: negligible next to a training step)."""

    def __init__(self, run_dir: Path, method: str, total_steps: int):
        super().__init__(method, total_steps)
        self.path = Path(run_dir) / PROGRESS_FILE
        self._dump()

    def on_progress(self, step: int, total: int, metrics: dict) -> None:
        super().on_progress(step, total, metrics)
        self._dump()
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("step", "elapsed_s") and v is not None)
        logging.getLogger("class7").info("step %d/%d: %s", step, total, shown[:400])  # the page's log tail

    __call__ = on_progress

    def phase(self, name: str, step: int | None = None) -> None:
        super().phase(name, step)
        self._dump()

    def _dump(self) -> None:
        write_json(self.path, self.state())


def read_progress(run_dir: str | Path) -> dict | None:
    """``progress.json`` of a run (None while it does not exist or is being replaced)."""
    try:
        return json.loads((Path(run_dir) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def log_tail(run_dir: str | Path, lines: int = 40) -> list[str]:
    """The last ``lines`` lines of the run's ``worker.log`` (oldest first)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 64_000))
        return f.read().decode("utf-8", "replace").splitlines()[-lines:]


def _log_to(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "transformers", "datasets", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # library deprecation warnings: not for the student's log tail
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    return handler


def run_job(spec: dict) -> dict:
    """Train the job described by ``spec`` in this process.

    Args:
        spec: ``{"job_id", "owner", "method", "config": {field: value}, "run_dir", "session": Session.to_dict(),
            "dataset": DatasetChoice.to_dict(), "reward_adapter": directory or None}`` (plain JSON).

    Returns:
        The run's ``run_info.json`` content (status ``completed`` / ``stopped``).

    Raises:
        Whatever the training raises; the run directory then holds ``error.log`` and status ``failed``.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _log_to(run_dir)
    log = logging.getLogger("class7")
    try:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.set_verbosity_error()
        from ..config import make_config
        from ..pipeline import train_run
        from ..session import DatasetChoice, Session

        t = time.time()
        method = spec["method"]
        progress = FileProgress(run_dir, method, int(spec["config"]["max_steps"]))
        progress.phase("loading the model and data")
        log.info("job %s: %s for %s (pid %d)", spec.get("job_id"), method, spec.get("owner") or "the class", os.getpid())
        session = Session(**spec["session"])
        cfg = make_config(method, "classroom", **spec["config"])  # the full resolved config: the preset is in it
        data = session.load_data(DatasetChoice(**spec["dataset"]))
        log.info("loaded in %.1fs: %d training pairs", time.time() - t, len(data["train"]))
        result = train_run(session, method, cfg, data, run_dir, reward_adapter=spec.get("reward_adapter"),
                           on_progress=progress,
                           description={"owner": spec.get("owner"), "job_id": spec.get("job_id"),
                                        "dataset_choice": spec["dataset"]})
        log.info("job %s: %s after %.0fs", spec.get("job_id"), result["status"], time.time() - t)
        return {k: v for k, v in result.items() if k != "history"}
    except BaseException:
        log.exception("job %s failed", spec.get("job_id"))
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _die_with_parent() -> None:
    """On Linux, ask the kernel to SIGTERM this worker when the server dies (even by SIGKILL), so no orphan keeps
    training and writing into a run directory the restarted server has marked ``interrupted``. (The signal comes
    when the thread that started the process ends: the dispatcher's, which lives as long as the server.)"""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the server died before the call: nothing would signal us
        os._exit(1)


def main(argv=None) -> int:
    """``python -m alignment.serving.worker [--entry module:function] SPEC.json``: a local worker process
    (``LocalProcessBackend``). Exit code 0 when the job ended normally (completed or stopped), 1 otherwise."""
    import argparse
    import importlib

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--entry", default="alignment.serving.worker:run_job")
    p.add_argument("spec")
    args = p.parse_args(argv)
    _die_with_parent()
    module, _, name = args.entry.partition(":")
    target = getattr(importlib.import_module(module), name)
    try:
        target(json.loads(Path(args.spec).read_text(encoding="utf-8")))
    except BaseException:  # noqa: BLE001 - recorded in the run directory (error.log) by the job itself
        return 1
    return 0


if __name__ == "__main__":
    os._exit(main())  # skip interpreter teardown (torch's thread pools): the run directory is complete
