"""One background training at a time, observable while it runs (the app's Train tab polls it).

A ``TrainingJob`` runs ``target(progress)`` in a daemon thread, where ``progress`` is the job itself. The trainer
reports each logged step through ``progress(step, total, metrics)`` and what it is doing through
``progress.phase(name, step)`` (``RunContext.phase``: "sampling", "scoring", "update", "saving adapter", ...).
The job keeps the metric history (also in the run's ``metrics.jsonl``), a log tail, the current phase, and the
measured duration of each step, from which ``snapshot()`` estimates the time left (``remaining_seconds``). An
exception ends the job as ``failed`` with its message and traceback tail; the process and the app keep running.

``stop()`` sets the run's stop event; the trainer ends at its next stop check (PPO: the next sampled token or
phase boundary; the TRL trainers: the end of the current step) and the snapshot says ``stop_requested`` until
the thread has ended, then reports how long the stop took (``stop_latency_s``).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from typing import Callable


def recent_step_time(step_times: list[float], window: int = 5) -> float | None:
    """Mean seconds of the last ``window`` measured steps (the first step also warms caches; later steps are more
    like the next ones); None before any step was measured."""
    recent = step_times[-window:]
    return sum(recent) / len(recent) if recent else None


def remaining_seconds(step_times: list[float], steps_done: int, total_steps: int, in_step_s: float = 0.0,
                      window: int = 5) -> float | None:
    """Seconds until the last step ends, estimated from measured step durations.

    Args:
        step_times: seconds each finished step took, in order (``TrainingJob.step_times``).
        steps_done: finished steps; ``total_steps``: planned steps.
        in_step_s: seconds the step in progress has already run.
        window: the estimate uses the mean of the last ``window`` steps (``recent_step_time``).

    Returns:
        None before any step was measured (the page says "estimating..."); otherwise
        ``max(t * left - in_step_s, t * (left - 1), 0)`` with ``t`` the mean step time and ``left`` the steps not
        finished: the time left falls while a step runs, but a step that overruns its estimate does not eat into
        the steps after it.
    """
    per_step = recent_step_time(step_times, window)
    if per_step is None:
        return None
    left = max(0, total_steps - steps_done)
    return max(per_step * left - in_step_s, per_step * (left - 1), 0.0)


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
        target: ``target(progress) -> dict``; runs in the thread. ``progress`` is this job: call it as
            ``progress(step, total, metrics)`` per logged step, and ``progress.phase(name, step)`` per phase.
        total_steps: planned steps (for the progress bar).
        loggers: logger names whose records go to the log tail.
        stop_event: the event the target's run checks (``RunContext.stop_event``); ``stop()`` sets it.
        settings: what the run was started with (``{"preset", "learning_rate", ...}``), shown to every user.

    Attributes:
        status: ``"running"``, ``"completed"``, ``"stopped"`` or ``"failed"``.
        history: metric rows as logged (``{"step", "elapsed_s", <metric>...}``).
        current_phase: what the run is doing now (None before the first phase and after the end).
        step_times: measured seconds per finished step: from the step's first phase (or, when the trainer names
            no phases, the previous step's end) to its metrics line; logged every k steps, each of the k gets 1/k.
    """

    def __init__(self, method: str, target: Callable, total_steps: int, loggers=("class7", "alignment"),
                 stop_event: threading.Event | None = None, settings: dict | None = None, owner: str | None = None):
        self.method, self.total_steps, self.owner = method, total_steps, owner
        self.status, self.error, self.result = "running", None, None
        self.step, self.history = 0, []
        self.log: deque[str] = deque(maxlen=200)
        self.started = time.time()
        self.finished: float | None = None
        self.stop_event = stop_event or threading.Event()
        self.settings = dict(settings or {})
        self.stop_requested_at: float | None = None
        self.current_phase: str | None = None
        self.phase_since = self.started
        self.step_times: list[float] = []
        self._step_began: dict[int, float] = {}  # step -> time its first phase was named
        self._last_end: tuple[int, float | None] = (0, None)  # (step, time) of the last metrics line
        self._handler = _TailHandler(self.log)
        self._loggers = [logging.getLogger(n) for n in loggers]
        for lg in self._loggers:
            lg.addHandler(self._handler)
        self._target = target
        self.thread = threading.Thread(target=self._run, name=f"train-{method}", daemon=True)
        self.thread.start()

    def on_progress(self, step: int, total: int, metrics: dict) -> None:
        now = time.time()
        done, last_end = self._last_end
        began = self._step_began.get(done + 1, last_end)
        if began is not None and step > done:
            self.step_times.extend([(now - began) / (step - done)] * (step - done))
        self._last_end = (step, now)
        self.step, self.total_steps = step, total
        self.history.append(dict(metrics))
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("step", "elapsed_s") and v is not None)
        self.log.append(f"{time.strftime('%H:%M:%S')} step {step}/{total}: {shown[:400]}")

    __call__ = on_progress

    def phase(self, name: str, step: int | None = None) -> None:
        """The run now does ``name``; ``step`` is the 1-based step it belongs to (None outside the step loop, and
        then the phase also goes to the log tail)."""
        now = time.time()
        if step is not None:
            self._step_began.setdefault(int(step), now)
        else:
            self.log.append(f"{time.strftime('%H:%M:%S')} {self.method}: {name}")
        self.current_phase, self.phase_since = name, now

    def stop(self) -> bool:
        """Ask the run to stop at its next stop check; False when it has already ended."""
        if not self.running:
            return False
        if self.stop_requested_at is None:
            self.stop_requested_at = time.time()
            self.log.append(f"{time.strftime('%H:%M:%S')} {self.method}: stop requested "
                            f"(step {self.step}/{self.total_steps}, {self.current_phase or 'starting'})")
        self.stop_event.set()
        return True

    @property
    def stop_latency_s(self) -> float | None:
        """Seconds from ``stop()`` to the end of the thread (None: no stop asked, or still stopping)."""
        if self.stop_requested_at is None or self.finished is None:
            return None
        return round(self.finished - self.stop_requested_at, 2)

    def _run(self) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {self.method}: started")
        try:
            self.result = self._target(self)
            self.status = self.result.get("status", "completed") if isinstance(self.result, dict) else "completed"
        except BaseException as exc:  # noqa: BLE001 - the app must survive any training failure
            self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
            self.log.append("\n".join(traceback.format_exc().rstrip().splitlines()[-12:]))  # one entry, in order
        finally:
            self.finished = time.time()
            self.current_phase = None
            stop = f" (stop took {self.stop_latency_s:.1f}s)" if self.stop_latency_s is not None else ""
            self.log.append(f"{time.strftime('%H:%M:%S')} {self.method}: {self.status} "
                            f"after {self.finished - self.started:.0f}s{stop}")
            for lg in self._loggers:
                lg.removeHandler(self._handler)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> str:
        self.thread.join(timeout)
        return self.status

    def snapshot(self) -> dict:
        """What the UI shows: status, step/total, elapsed seconds, metric history, log tail (oldest first), error;
        the current ``phase`` and seconds in it, ``eta_s`` (seconds left, None while estimating or after the
        end), ``step_time_s`` (mean of the last 5 measured steps), ``stop_requested``, ``stop_latency_s``,
        ``started_at`` (epoch seconds, tells two runs apart) and the run's ``settings``."""
        now = time.time()
        end = self.finished or now
        running = self.running
        done, last_end = self._last_end
        began = self._step_began.get(done + 1, last_end)
        in_step = now - began if began is not None else 0.0
        eta = remaining_seconds(self.step_times, self.step, self.total_steps, in_step) if running else None
        return {"method": self.method, "status": self.status, "running": running, "step": self.step,
                "total_steps": self.total_steps, "elapsed_s": round(end - self.started, 1),
                "history": list(self.history), "log_tail": list(self.log)[-40:], "error": self.error,
                "phase": self.current_phase if running else None,
                "phase_elapsed_s": round(now - self.phase_since, 1) if running else None,
                "eta_s": None if eta is None else round(eta, 1),
                "step_time_s": None if (t := recent_step_time(self.step_times)) is None else round(t, 2),
                "stop_requested": self.stop_requested_at is not None, "stop_latency_s": self.stop_latency_s,
                "started_at": self.started, "settings": dict(self.settings)}
