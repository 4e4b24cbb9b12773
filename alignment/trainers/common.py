"""What every training run shares: a self-describing run directory, metrics JSONL, stop flag, progress.

A run directory holds::

    config.json      resolved config, model source, dataset description
    metrics.jsonl    one JSON object per logged step: {"step", "elapsed_s", <TRL metric names>...}
    adapter/         the trained LoRA adapter (peft ``save_pretrained``)
    samples.json     generations of the trained model on a few evaluation prompts
    run_info.json    status ("running", "completed", "stopped", "failed"), duration, error (if any)

A run stops early, leaving a valid directory, when ``RunContext.stop_event`` is set or a file named ``STOP``
appears in the run directory; both are checked after every step (PPO also at each phase boundary and between
sampled tokens, ``alignment.trainers.ppo``).

Progress: ``ctx.log`` reports each logged step to ``on_progress(step, total, metrics)``; ``ctx.phase(name, step)``
names what the run is doing between steps and inside one ("sampling", "log-probs", "scoring", "update",
"saving adapter", ...) to ``on_progress.phase(name, step)`` when the callback has that method (the app's
``alignment.jobs.ProgressTracker`` does; a plain function is fine and only gets the steps).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback


def strict_json(obj):
    """Replace NaN/inf by None recursively so the result is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return strict_json(obj.item())
    return obj


def write_json(path: Path, obj) -> None:
    """Write strict JSON (no NaN) atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(strict_json(obj), indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    tmp.replace(path)


def read_metrics(path: Path) -> list[dict]:
    """All lines of a ``metrics.jsonl`` (a partially written last line is ignored)."""
    rows = []
    if Path(path).is_file():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def read_run_info(run_dir: Path) -> dict:
    """A run directory's ``run_info.json``, or ``{}`` while it is missing or being written."""
    try:
        return json.loads((Path(run_dir) / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class RunContext:
    """A run directory plus the hooks a trainer calls: ``log`` per step, ``should_stop``, ``progress``.

    Args:
        run_dir: directory to create (existing metrics are replaced).
        method: ``"reward"``, ``"dpo"``, ``"ppo"`` or ``"grpo"``.
        total_steps: planned number of steps (for progress).
        stop_event: set it from another thread to stop the run after the current step.
        on_progress: ``callback(step, total_steps, metrics)`` after each logged step (CLI bars, the app); if it
            also has a ``phase(name, step)`` method, ``phase`` calls are forwarded to it.
        parent: the run this one is part of (a sub-directory of it); its stop request stops this run too.
    """

    def __init__(self, run_dir: Path, method: str, total_steps: int, stop_event: threading.Event | None = None,
                 on_progress: Callable[[int, int, dict], None] | None = None, parent: "RunContext | None" = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.method, self.total_steps = method, total_steps
        self.stop_event = stop_event or threading.Event()
        self.on_progress = on_progress
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.metrics_path.write_text("")
        (self.run_dir / "STOP").unlink(missing_ok=True)
        self.start = time.time()
        self.history: list[dict] = []
        self.stopped_early = False
        self.parent = parent  # a run inside another one (the gold reward model): the outer run's stop stops it
        write_json(self.run_dir / "run_info.json", {"method": method, "status": "running", "total_steps": total_steps})

    def write_config(self, config: dict) -> None:
        write_json(self.run_dir / "config.json", config)

    def log(self, step: int, metrics: dict) -> None:
        """Append one metrics line (floats only; NaN becomes null)."""
        row = {"step": int(step), "elapsed_s": round(time.time() - self.start, 3)}
        for k, v in metrics.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[k] = float(v)
        row = strict_json(row)
        self.history.append(row)
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.on_progress:
            self.on_progress(step, self.total_steps, row)

    def phase(self, name: str, step: int | None = None) -> None:
        """Name what the run does from now on, for the progress display.

        Args:
            name: a short phrase a student can read ("sampling", "scoring", "update", "saving adapter").
            step: the 1-based step the phase belongs to, or None outside the step loop (loading, saving). The
                first phase of a step marks its start, so step times can be measured from it.
        """
        hook = getattr(self.on_progress, "phase", None)
        if callable(hook):
            hook(name, step)

    def should_stop(self) -> bool:
        if self.stop_event.is_set() or (self.run_dir / "STOP").exists() or (self.parent and self.parent.should_stop()):
            self.stopped_early = True
        return self.stopped_early

    def finish(self, status: str | None = None, **extra) -> dict:
        status = status or ("stopped" if self.stopped_early else "completed")
        info = {"method": self.method, "status": status, "total_steps": self.total_steps,
                "steps_done": self.history[-1]["step"] if self.history else 0,
                "train_time_s": round(time.time() - self.start, 2), **extra}
        write_json(self.run_dir / "run_info.json", info)
        return info

    def fail(self, exc: BaseException) -> dict:
        tb = traceback.format_exc()
        (self.run_dir / "error.log").write_text(tb, encoding="utf-8")
        return self.finish("failed", error=f"{type(exc).__name__}: {exc}")


def attach(trainer, ctx: RunContext, step_phase: str = "update"):
    """Connect a transformers ``Trainer`` to ``ctx`` (metrics, stop flag, ``step_phase`` named at the start of
    each step) and silence its stdout printer."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(RunContextCallback(ctx, step_phase))
    return trainer


def trained_model(trainer):
    """The trained model without accelerate's mixed-precision wrapper, so that later scoring and generation run
    in fp32 exactly as a model loaded from the saved adapter would."""
    return trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).eval()


class RunContextCallback(TrainerCallback):
    """Bridges a TRL/transformers ``Trainer`` to a ``RunContext``: metrics lines, the stop flag, and the phase
    ``step_phase`` at the start of each step (``state.global_step`` counts finished steps, so the step that
    begins is ``global_step + 1``)."""

    _SKIP = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos"}

    def __init__(self, ctx: RunContext, step_phase: str = "update"):
        self.ctx, self.step_phase = ctx, step_phase

    def on_step_begin(self, args, state, control, **kwargs):
        self.ctx.phase(self.step_phase, state.global_step + 1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = {k: v for k, v in (logs or {}).items() if k not in self._SKIP}
        if set(logs) - {"epoch"}:  # the end-of-training summary leaves only "epoch"
            self.ctx.log(state.global_step, logs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.ctx.should_stop():
            control.should_training_stop = True
        return control


@contextlib.contextmanager
def lm_head_on_labelled_positions_only(enabled: bool = True):
    """Within this block, TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``) scores only the positions
    that have a label (the completion tokens) on every device. TRL does so only where Triton runs and otherwise
    scores every position of the batch, prompt and padding included, then zeroes them: the values are the same,
    the work is not (tests/test_precision.py checks equal losses). A no-op if TRL changes the private name."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if not enabled or original is None:
        yield
        return
    trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original


def trl_common_args(cfg, output_dir: Path, use_cpu: bool) -> dict:
    """TrainingArguments shared by the TRL-based methods (no checkpoints, no reporting; bf16 autocast per cfg)."""
    return dict(
        output_dir=str(output_dir / "trainer_state"),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        save_strategy="no",
        report_to="none",
        use_cpu=use_cpu,
        bf16=cfg.bf16,
        disable_tqdm=True,
        gradient_checkpointing=False,  # 135M fits easily; recomputation only costs time
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )
