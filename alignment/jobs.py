"""Progress of one training, as the Train tab shows it: steps, the phase a step is in, time left, log tail.

A ``ProgressTracker`` is the progress callback a trainer reports to (``RunContext``): each logged step through
``tracker(step, total, metrics)`` and what it is doing through ``tracker.phase(name, step)`` ("sampling",
"scoring", "update", "saving adapter", ...). It measures the duration of each step from its first phase to its
metrics line, from which ``snapshot`` estimates the time left (``remaining_seconds``). In the app the tracker
lives in the job's worker process and writes its ``state()`` to the run directory
(``alignment.serving.worker.FileProgress``); the server rebuilds the snapshot from that file with ``snapshot``.
"""

from __future__ import annotations

import time


def recent_step_time(step_times: list[float], window: int = 5) -> float | None:
    """Mean seconds of the last ``window`` measured steps (the first step also warms caches; later steps are more
    like the next ones); None before any step was measured."""
    recent = step_times[-window:]
    return sum(recent) / len(recent) if recent else None


def remaining_seconds(step_times: list[float], steps_done: int, total_steps: int, in_step_s: float = 0.0,
                      window: int = 5) -> float | None:
    """Seconds until the last step ends, estimated from measured step durations.

    Args:
        step_times: seconds each finished step took, in order (``ProgressTracker.step_times``).
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


class ProgressTracker:
    """Steps, phases and measured step times of one run (see the module docstring).

    Args:
        method: the method name; total_steps: planned steps (for the progress bar).

    Attributes:
        step: the last logged step.
        current_phase, phase_since: what the run is doing now and since when (epoch seconds).
        step_times: measured seconds per finished step: from the step's first phase (or, when the trainer names
            no phases, the previous step's end) to its metrics line; logged every k steps, each of the k gets 1/k.
    """

    def __init__(self, method: str, total_steps: int):
        self.method, self.total_steps = method, total_steps
        self.step = 0
        self.started = time.time()
        self.current_phase: str | None = None
        self.phase_since = self.started
        self.step_times: list[float] = []
        self._step_began: dict[int, float] = {}  # step -> time its first phase was named
        self._last_end: tuple[int, float | None] = (0, None)  # (step, time) of the last metrics line

    def on_progress(self, step: int, total: int, metrics: dict) -> None:
        now = time.time()
        done, last_end = self._last_end
        began = self._step_began.get(done + 1, last_end)
        if began is not None and step > done:
            self.step_times.extend([(now - began) / (step - done)] * (step - done))
        self._last_end = (step, now)
        self.step, self.total_steps = step, total

    __call__ = on_progress

    def phase(self, name: str, step: int | None = None) -> None:
        """The run now does ``name``; ``step`` is the 1-based step it belongs to (None outside the step loop)."""
        now = time.time()
        if step is not None:
            self._step_began.setdefault(int(step), now)
        self.current_phase, self.phase_since = name, now

    def state(self) -> dict:
        """Plain JSON the server reads back (``snapshot``): steps, phase, step times, when the current step began."""
        done, last_end = self._last_end
        began = self._step_began.get(done + 1, last_end)
        return {"method": self.method, "step": self.step, "total_steps": self.total_steps, "started": self.started,
                "phase": self.current_phase, "phase_since": self.phase_since, "step_began": began,
                "step_times": [round(t, 4) for t in self.step_times[-50:]], "updated": time.time()}


def snapshot(state: dict | None, running: bool, now: float | None = None) -> dict:
    """What the page shows from a ``ProgressTracker.state()``: ``step``, ``total_steps``, ``phase`` and seconds
    in it (``phase_elapsed_s``), ``eta_s`` (seconds left, None while estimating or after the end) and
    ``step_time_s`` (mean of the last 5 measured steps). ``running``: whether the job still runs."""
    now = time.time() if now is None else now
    state = state or {}
    step, total = int(state.get("step") or 0), int(state.get("total_steps") or 0)
    times = state.get("step_times") or []
    began = state.get("step_began")
    eta = remaining_seconds(times, step, total, now - began if began else 0.0) if running else None
    return {"step": step, "total_steps": total,
            "phase": state.get("phase") if running else None,
            "phase_elapsed_s": round(now - state["phase_since"], 1) if running and state.get("phase_since") else None,
            "eta_s": None if eta is None else round(eta, 1),
            "step_time_s": None if (t := recent_step_time(times)) is None else round(t, 2)}
