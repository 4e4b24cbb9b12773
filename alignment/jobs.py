"""One background training at a time, observable while it runs (the app's Train tab polls it).

A ``TrainingJob`` runs ``target(on_progress)`` in a daemon thread. The trainer reports each logged step through
``on_progress(step, total, metrics)``; the job keeps the metric history (also in the run's ``metrics.jsonl``)
and a log tail. An exception ends the job as ``failed`` with its message and traceback tail; the process and
the app keep running.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from typing import Callable


class _TailHandler(logging.Handler):
    def __init__(self, sink: deque):
        super().__init__(logging.INFO)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


class TrainingJob:
    """A training run in a background thread.

    Args:
        method: the method name, shown to users.
        target: ``target(on_progress) -> dict``; runs in the thread.
        total_steps: planned steps (for the progress bar).
        loggers: logger names whose records go to the log tail.

    Attributes:
        status: ``"running"``, ``"completed"``, ``"stopped"`` or ``"failed"``.
        history: metric rows as logged (``{"step", "elapsed_s", <metric>...}``).
    """

    def __init__(self, method: str, target: Callable, total_steps: int, loggers=("class7", "alignment")):
        self.method, self.total_steps = method, total_steps
        self.status, self.error, self.result = "running", None, None
        self.step, self.history = 0, []
        self.log: deque[str] = deque(maxlen=200)
        self.started = time.time()
        self.finished: float | None = None
        self._handler = _TailHandler(self.log)
        self._loggers = [logging.getLogger(n) for n in loggers]
        for lg in self._loggers:
            lg.addHandler(self._handler)
        self._target = target
        self.thread = threading.Thread(target=self._run, name=f"train-{method}", daemon=True)
        self.thread.start()

    def on_progress(self, step: int, total: int, metrics: dict) -> None:
        self.step, self.total_steps = step, total
        self.history.append(dict(metrics))
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("step", "elapsed_s") and v is not None)
        self.log.append(f"{time.strftime('%H:%M:%S')} step {step}/{total}: {shown[:400]}")

    def _run(self) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {self.method}: started")
        try:
            self.result = self._target(self.on_progress)
            self.status = self.result.get("status", "completed") if isinstance(self.result, dict) else "completed"
        except BaseException as exc:  # noqa: BLE001 - the app must survive any training failure
            self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
            self.log.extend(traceback.format_exc().rstrip().splitlines()[-12:])
        finally:
            self.finished = time.time()
            self.log.append(f"{time.strftime('%H:%M:%S')} {self.method}: {self.status} "
                            f"after {self.finished - self.started:.0f}s")
            for lg in self._loggers:
                lg.removeHandler(self._handler)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> str:
        self.thread.join(timeout)
        return self.status

    def snapshot(self) -> dict:
        """What the UI shows: status, step/total, elapsed seconds, metric history, log tail, error."""
        end = self.finished or time.time()
        return {"method": self.method, "status": self.status, "running": self.running, "step": self.step,
                "total_steps": self.total_steps, "elapsed_s": round(end - self.started, 1),
                "history": list(self.history), "log_tail": list(self.log)[-40:], "error": self.error}
