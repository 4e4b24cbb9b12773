"""What the Train tab tells a student while a run trains: the time left from measured step times, the phase a
step is in (PPO, GRPO), Stop taking effect inside a PPO step, and a chart whose panels each have one scale."""

import threading
import time
from pathlib import Path

import pytest
import torch

from alignment.config import make_config
from alignment.data import fit_to_length, split_pairs
from alignment.generation import RewardScorer
from alignment.jobs import ProgressTracker, remaining_seconds, snapshot
from alignment.models import load_sequence_classifier
from alignment.trainers import train_grpo, train_ppo
from alignment.trainers.common import RunContext, read_metrics

FAST = dict(max_completion_length=12, max_prompt_length=64, learning_rate=5e-3)


@pytest.fixture(scope="module")
def train_rows(builtin_rows, tokenizer):
    return split_pairs(fit_to_length(builtin_rows[:60], tokenizer, 64, 12), seed=0)[0]


@pytest.fixture(scope="module")
def scorer(tiny_source, tokenizer):
    torch.manual_seed(0)
    return RewardScorer(load_sequence_classifier(tiny_source, tokenizer), tokenizer)


class Recorder:
    """A progress callback that also takes phases (as ``ProgressTracker`` does); records both, in order."""

    def __init__(self, on_phase=None, on_step=None):
        self.events, self.on_phase, self.on_step = [], on_phase, on_step

    def __call__(self, step, total, metrics):
        self.events.append(("logged", step))
        if self.on_step:
            self.on_step(step)

    def phase(self, name, step=None):
        self.events.append((name, step))
        if self.on_phase:
            self.on_phase(name, step)


# ------------------------------------------------------------------------------------------ time left
def test_remaining_seconds_from_measured_step_times():
    assert remaining_seconds([], 0, 10) is None  # "estimating..." until a step was measured
    assert remaining_seconds([2.0, 2.0, 2.0], 3, 10) == pytest.approx(14.0)
    assert remaining_seconds([2.0, 2.0, 2.0], 3, 10, in_step_s=1.5) == pytest.approx(12.5)  # ticks down in a step
    assert remaining_seconds([2.0, 2.0, 2.0], 3, 10, in_step_s=9.0) == pytest.approx(12.0)  # overrun: 6 steps left
    assert remaining_seconds([30.0, 1.0, 1.0, 1.0, 1.0, 1.0], 6, 8) == pytest.approx(2.0)  # last 5 steps only
    assert remaining_seconds([2.0], 10, 10, in_step_s=3.0) == 0.0


def test_tracker_measures_steps_from_their_first_phase_not_from_loading(monkeypatch):
    """The worker's tracker times a step from its first phase to its metrics line; loading is no step. The server
    rebuilds the page's numbers from the tracker's state (``snapshot``), as it reads them from progress.json."""
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    tracker = ProgressTracker("ppo", 4)
    tracker.phase("loading model")
    clock[0] += 0.5  # not part of any step
    st = snapshot(tracker.state(), running=True)
    assert st["phase"] == "loading model" and st["eta_s"] is None and st["step"] == 0
    tracker.phase("sampling", 1)
    clock[0] += 0.2
    tracker.phase("update", 1)
    clock[0] += 0.1
    tracker(1, 4, {"loss": 1.0})
    tracker.phase("sampling", 2)
    clock[0] += 0.1
    assert tracker.step_times == [pytest.approx(0.3)]  # sampling + update, without the 0.5 s of loading
    st = snapshot(tracker.state(), running=True)
    assert st["phase"] == "sampling" and st["step"] == 1 and st["phase_elapsed_s"] == pytest.approx(0.1)
    assert st["eta_s"] == pytest.approx(3 * 0.3 - 0.1)  # 3 steps left, 0.1 s into the second
    assert snapshot(tracker.state(), running=False)["eta_s"] is None  # ended: no estimate, no phase


def test_progress_survives_the_trip_through_the_run_directory(tmp_path):
    """The worker process writes progress.json at every step and phase; the server reads the same numbers."""
    from alignment.serving.worker import FileProgress, read_progress

    tracker = FileProgress(tmp_path, "dpo", 3)
    tracker.phase("update", 1)
    tracker(1, 3, {"loss": 0.5})
    tracker.phase("update", 2)
    saved = read_progress(tmp_path)
    assert saved["step"] == 1 and saved["phase"] == "update" and len(saved["step_times"]) == 1
    assert snapshot(saved, running=True)["step_time_s"] == pytest.approx(tracker.step_times[0], abs=0.01)


# ------------------------------------------------------------------------------------------ phases and stop
def test_ppo_names_its_phases_in_order(tmp_path, tiny_source, tokenizer, train_rows, scorer):
    cfg = make_config("ppo", **FAST, max_steps=2, batch_size=2, num_mini_batches=1)
    rec = Recorder()
    ctx = RunContext(tmp_path / "ppo", "ppo", cfg.max_steps, on_progress=rec)
    train_ppo(cfg, tiny_source, tokenizer, train_rows, scorer, ctx)
    step = lambda s: [("sampling", s), ("log-probs", s), ("scoring", s), ("update", s), ("logged", s)]  # noqa: E731
    assert rec.events == [("loading model", None), ("normalising rewards", None), *step(1), *step(2),
                          ("saving adapter", None)]


def test_grpo_names_its_phases_in_trl_order(tmp_path, tiny_source, tokenizer, train_rows, scorer):
    cfg = make_config("grpo", **FAST, max_steps=1)
    rec = Recorder()
    ctx = RunContext(tmp_path / "grpo", "grpo", cfg.max_steps, on_progress=rec)
    train_grpo(cfg, tiny_source, tokenizer, train_rows, scorer, ctx)
    in_step = [e for e in rec.events if e[1] == 1]
    assert in_step == [("sampling", 1), ("log-probs", 1), ("scoring", 1), ("update", 1), ("logged", 1)]
    assert [e for e in rec.events if e[1] is None] == [("loading model", None), ("preparing data", None),
                                                        ("saving adapter", None)]
    assert "rewards/reward_model/mean" in read_metrics(ctx.run_dir / "metrics.jsonl")[0]  # TRL's name kept


def _adapter_weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter" / "adapter_model.safetensors"))


def test_stop_inside_a_ppo_step_drops_that_step(tmp_path, tiny_source, tokenizer, train_rows, scorer):
    # Stop pressed while step 2 is scored: the run ends before step 2's update, status "stopped", and the saved
    # adapter is exactly the policy after step 1 (which metrics.jsonl describes).
    cfg = make_config("ppo", **FAST, max_steps=20, batch_size=2, num_mini_batches=1)
    stop, after_step_1 = threading.Event(), {}

    def on_step(step):
        if step == 1:
            policy = ctx_holder["policy"]
            after_step_1.update({k: v.detach().clone() for k, v in policy.state_dict().items() if "lora_" in k})

    def on_phase(name, step):
        if (name, step) == ("scoring", 2):
            stop.set()

    from peft import get_peft_model

    from alignment.models import load_causal_lm, lora_config

    torch.manual_seed(0)
    policy = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config(cfg.lora_r, cfg.lora_alpha))
    ctx_holder = {"policy": policy}
    rec = Recorder(on_phase, on_step)
    ctx = RunContext(tmp_path / "ppo", "ppo", cfg.max_steps, stop_event=stop, on_progress=rec)
    train_ppo(cfg, tiny_source, tokenizer, train_rows, scorer, ctx, policy=policy)
    info = ctx.finish()
    assert info["status"] == "stopped" and info["steps_done"] == 1
    assert rec.events[-3:] == [("log-probs", 2), ("scoring", 2), ("saving adapter", None)]
    assert [m["step"] for m in read_metrics(ctx.run_dir / "metrics.jsonl")] == [1]
    saved = _adapter_weights(ctx.run_dir)
    assert saved and len(saved) == len(after_step_1)
    for name, value in saved.items():  # peft drops the adapter name from the saved keys
        match = [v for k, v in after_step_1.items() if k.replace(".default", "") == name]
        assert len(match) == 1 and torch.equal(match[0], value), name


def test_stop_ends_ppo_sampling_at_the_next_token(tmp_path, tiny_source, tokenizer, train_rows, scorer, monkeypatch):
    from alignment.trainers import ppo

    lengths = []
    real_generate = ppo.generate

    def generate(*args, **kwargs):
        gens = real_generate(*args, **kwargs)
        lengths.append(max(g.length for g in gens))
        return gens

    monkeypatch.setattr(ppo, "generate", generate)
    cfg = make_config("ppo", **dict(FAST, max_completion_length=24), max_steps=5, batch_size=2, num_mini_batches=1,
                      reward_norm_samples=0)  # the rollouts' generate calls only
    stop = threading.Event()
    rec = Recorder(on_phase=lambda name, step: stop.set() if (name, step) == ("sampling", 2) else None)
    ctx = RunContext(tmp_path / "ppo", "ppo", cfg.max_steps, stop_event=stop, on_progress=rec)
    train_ppo(cfg, tiny_source, tokenizer, train_rows, scorer, ctx)
    assert lengths[0] > 1 and lengths[1] == 1  # step 2 decoded a single token, then stopped
    assert ("log-probs", 2) not in rec.events and ctx.finish()["status"] == "stopped"
    assert (ctx.run_dir / "adapter" / "adapter_config.json").is_file() and (ctx.run_dir / "value_head.pt").is_file()


# ------------------------------------------------------------------------------------------ chart and form
def _axis_of(fig, name):
    (trace,) = [t for t in fig.data if t.name == name]
    return trace.yaxis or "y"


def test_training_figure_gives_entropy_its_own_axis():
    from alignment.report import training_figure

    history = [{"step": s, "objective/scores": 0.1 * s, "objective/rlhf_reward": 0.1 * s - 0.02,
                "objective/kl": 2.0 + s, "policy/approxkl_avg": 0.001, "policy/clipfrac_avg": 0.05,
                "val/clipfrac_avg": 0.1, "objective/entropy": 30.0 - s} for s in range(1, 5)]
    fig = training_figure("ppo", history)
    entropy = _axis_of(fig, "objective/entropy")
    assert [t.name for t in fig.data if (t.yaxis or "y") == entropy] == ["objective/entropy"]
    assert _axis_of(fig, "policy/clipfrac_avg") == _axis_of(fig, "val/clipfrac_avg") != entropy
    assert _axis_of(fig, "objective/kl") != _axis_of(fig, "policy/approxkl_avg")  # per answer vs per token
    columns = {tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("xaxis")}
    assert len(columns) == 2  # at most two panels side by side (phones)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["reward", "KL", "approx. KL (update)", "clip fractions", "entropy"]


def test_train_form_defaults_to_the_apps_preset(tmp_path):
    import gradio as gr

    from class7_1 import AlignmentComparisonManager
    from ui.train_tab import create_train_tab

    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path, preset="classroom")
    with gr.Blocks():
        tab = create_train_tab(manager)
    assert tab["preset"].value == "classroom" and tab["max_steps"].value == 30


def test_progress_label_ticks_names_the_phase_and_estimates():
    from ui.train_tab import progress_label

    st = {"method": "ppo", "step": 0, "total_steps": 30, "state": "running", "elapsed_s": 66.4,
          "phase": "sampling", "phase_elapsed_s": 12.2, "eta_s": None, "stop_requested": False}
    assert progress_label(st) == "PPO: step 0/30 · sampling 12 s · 1 min 06 s elapsed · estimating time left…"
    st.update(step=3, eta_s=135.0, phase="update", phase_elapsed_s=0.4)
    assert progress_label(st) == "PPO: step 3/30 · update 0 s · 1 min 06 s elapsed · about 2 min 15 s left"
    st.update(stop_requested=True)
    assert progress_label(st).startswith("PPO: step 3/30 · stopping… · update")
    st.update(state="stopped")
    assert progress_label(st) == "PPO: step 3/30 · stopped after 1 min 06 s"
    waiting = {"method": "dpo", "state": "queued", "position": 3, "total_steps": 30, "start_in_s": 125.0}
    assert progress_label(waiting) == "DPO: waiting, number 3 in the queue · starts ~2 min 05 s"
    assert "estimating" in progress_label({**waiting, "start_in_s": None})


@pytest.mark.parametrize("stop_after_first_step", [False, True])
def test_the_manager_writes_samples_only_for_a_run_that_was_not_stopped(tmp_path, stop_after_first_step):
    """After the last step the progress says "writing samples"; a stopped run skips them (several seconds on
    the real model) and still keeps its adapter and metrics."""
    from class7_1 import AlignmentComparisonManager

    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path, preset="quick")
    rec = Recorder(on_step=lambda step: manager.stop_event.set() if stop_after_first_step else None)
    result = manager.train_method("dpo", on_progress=rec, max_steps=3)
    phases = [name for name, _ in rec.events]
    assert result["status"] == ("stopped" if stop_after_first_step else "completed")
    assert ("writing samples" in phases) is not stop_after_first_step
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == tmp_path / "class" / "runs" / "dpo"  # a class model: no owner
    assert (run_dir / "samples.json").is_file() is not stop_after_first_step
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
