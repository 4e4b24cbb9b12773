"""Reward-model learning curves on HH-RLHF (issue 12): accuracy against steps and training seconds.

Usage::

    .venv/bin/python benchmarks/rm_learning_curve.py --png docs/rm_learning_curve.png   # about 15 min, 2 cores
    .venv/bin/python benchmarks/rm_learning_curve.py --settings classroom --budget-s 30 --eval-pairs 50

Trains the classroom preset's reward model (``alignment.trainers.train_reward_model`` with a
``RewardModelConfig`` from the ``Session``: SmolLM2-135M-Instruct, LoRA on q/k/v/o + full scalar head,
bf16 autocast, batch 4) on HH-RLHF harmless-base pairs (read from ``../shared/data/hh-rlhf/``, never copied),
once per setting of a small grid (``SETTINGS``: token budget, learning rate, LoRA rank), and scores it with
``alignment.trainers.reward.evaluate_reward_model`` (the project's held-out metric) at ``--evals`` points
(default 3, the last after training; or every ``--eval-every`` steps), on

- ``--eval-pairs`` held-out pairs (default 200), the same pairs in every setting: drawn (seed 42) among the
  pairs that fit the smallest budget of the grid, then fitted to each setting's budget;
- ``--train-eval-pairs`` training pairs (default 50), a fixed sample of the training split.

Scoring runs under bf16 autocast (``RewardScorer.score(bf16=True)``, about 3x faster on this CPU, scores
within about 0.02 of fp32); ``--eval-fp32`` scores in fp32 as the pipeline's evaluation does. TRL's own
per-batch accuracy (each batch scored before the update on it, so on pairs not yet trained on) is kept
for every step as well.

Training time: each setting gets ``--budget-s`` seconds of training (default 180; evaluation time is not
counted). Its ``max_steps`` (which also sets the length of the linear learning-rate decay) is planned from
a 3-step calibration run of that setting (seconds per step), so that the schedule ends about when the
budget does; the run is also stopped once the next step would overrun the budget, which ends it before its
schedule where the calibration's first batches were shorter than the average (or the cores got busier).
``--max-steps N`` skips the calibration.

Writes ``<out>/rm_learning_curve.json`` (curves, final accuracies, steps, tokens, training wall and CPU
seconds, the machine's CPU and bf16 flags, load average before and after), ``<out>/rm_learning_curve.html``
(plotly) and a PNG of the figure (``--png``, default ``<out>/rm_learning_curve.png``; rendered from the HTML by
Debian's headless chromium through Playwright, since the venv has no kaleido; ``--png none`` skips it).
``--replot <json>`` redraws the figure of an earlier run without training.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HH_DEFAULT = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test-1800.jsonl.gz"
TARGET_ACCURACY = 0.65

# name -> RewardModelConfig overrides of the classroom preset (64 + 32 tokens, lr 5e-4, LoRA r 8 / alpha 32).
SETTINGS = {
    "classroom": {},
    "256 tokens": {"max_prompt_length": 128, "max_completion_length": 128},
    "256 tokens, lr 1e-3": {"max_prompt_length": 128, "max_completion_length": 128, "learning_rate": 1e-3},
    "256 tokens, lr 1e-4": {"max_prompt_length": 128, "max_completion_length": 128, "learning_rate": 1e-4},
    "256 tokens, r 64": {"max_prompt_length": 128, "max_completion_length": 128, "lora_r": 64, "lora_alpha": 256},
    "classroom, lr 2e-3": {"learning_rate": 2e-3},
}
DEFAULT_SETTINGS = ["classroom", "256 tokens", "256 tokens, lr 1e-3"]


def machine() -> dict:
    import torch
    from bench import cpu_features, cpuinfo_field

    flags = (cpuinfo_field("flags") or "").split()
    return {"cpu": cpuinfo_field("model name"), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu_features": cpu_features(),
            "amx": any(f.startswith("amx") for f in flags), "avx512_bf16": "avx512_bf16" in flags}


@contextlib.contextmanager
def as_after_training(model):
    """Score ``model`` in the middle of training as after it: eval mode, and without the bf16 autocast wrapper
    accelerate puts on ``model.forward`` while training (``trained_model`` removes it at the end), so every
    point of a curve is scored the same way as the last one (the scorer picks fp32 or bf16)."""
    patched, original = model.__dict__.get("forward"), model.__dict__.get("_original_forward")
    was_training = model.training
    if patched is not None and original is not None:
        model.forward = original
    model.eval()
    try:
        yield
    finally:
        if patched is not None and original is not None:
            model.forward = patched
        model.train(was_training)


class Bf16Scorer:
    """A ``RewardScorer`` that scores under bf16 autocast (``RewardScorer.score(bf16=True)``: about 3x faster here,
    scores within about 0.02 of fp32, tests/test_precision.py), for ``evaluate_reward_model``."""

    def __init__(self, scorer):
        self.scorer = scorer

    def score(self, prompts, responses):
        return self.scorer.score(prompts, responses, bf16=True)


def accuracy(scorer, rows: list[dict], bf16: bool) -> dict:
    from alignment.trainers.reward import evaluate_reward_model

    r = evaluate_reward_model(Bf16Scorer(scorer) if bf16 else scorer, rows)
    return {"accuracy": r["accuracy"], "mean_margin": r["mean_margin"], "n_pairs": r["n_pairs"]}


class Curve:
    """``on_progress`` of the run: a training clock without evaluation time, accuracy every ``eval_every``
    steps, and the time budget (stop when the next step would end past it)."""

    def __init__(self, model, scorer, heldout, train_sample, eval_every: int, budget_s: float, bf16_eval: bool):
        self.model, self.scorer, self.heldout, self.train_sample = model, scorer, heldout, train_sample
        self.eval_every, self.budget_s, self.bf16_eval = eval_every, budget_s, bf16_eval
        self.ctx = None
        self.t0: float | None = None
        self.cpu0 = 0.0
        self.eval_s = self.eval_cpu_s = 0.0
        self.last_s = self.last_cpu_s = 0.0
        self.step_s: list[float] = []
        self.points: list[dict] = []
        self.losses: list[dict] = []
        self.tokens = 0.0

    def phase(self, name: str, step: int | None = None) -> None:
        if name == "update" and step == 1 and self.t0 is None:
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def train_s(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_s if self.t0 is not None else 0.0

    def train_cpu_s(self) -> float:
        """CPU seconds of this process (all threads) in training: with 2 threads and the cores to itself, about
        twice ``train_s``; less when other processes share the cores."""
        return time.process_time() - self.cpu0 - self.eval_cpu_s if self.t0 is not None else 0.0

    def point(self, step: int, train_s: float, scorer=None) -> dict:
        t = time.perf_counter()
        scorer = scorer or self.scorer
        with as_after_training(self.model) if scorer is self.scorer else contextlib.nullcontext():
            held = accuracy(scorer, self.heldout, self.bf16_eval)
            train = accuracy(scorer, self.train_sample, self.bf16_eval)
        p = {"step": step, "train_s": round(train_s, 2), "train_cpu_s": round(self.last_cpu_s, 2),
             "tokens": self.tokens,
             "heldout_accuracy": held["accuracy"], "heldout_margin": held["mean_margin"],
             "train_accuracy": train["accuracy"], "train_margin": train["mean_margin"],
             "eval_s": round(time.perf_counter() - t, 2)}
        self.points.append(p)
        print(f"    step {step:>4}  {train_s:6.1f}s  held-out {held['accuracy']:.3f}  train {train['accuracy']:.3f}"
              f"  (eval {p['eval_s']:.0f}s)", flush=True)
        return p

    def __call__(self, step: int, total: int, row: dict) -> None:
        now = self.train_s()
        self.step_s.append(now - self.last_s)
        self.last_s, self.last_cpu_s = now, self.train_cpu_s()
        self.tokens = row.get("num_tokens", self.tokens)
        # TRL's batch accuracy is scored before the update on that batch: on pairs not trained on yet (epoch 1)
        self.losses.append({"step": step, "train_s": round(now, 2), "loss": row.get("loss"),
                            "batch_accuracy": row.get("accuracy"), "batch_margin": row.get("margin")})
        if step % self.eval_every == 0 and step < total:  # the last point is scored after training
            t, c = time.perf_counter(), time.process_time()
            self.point(step, now)
            self.eval_s += time.perf_counter() - t
            self.eval_cpu_s += time.process_time() - c
        typical = statistics.median(self.step_s[-5:])
        if self.ctx is not None and now + 2 * typical > self.budget_s:  # the next step ends about at the budget
            self.ctx.stop_event.set()


def build_model(cfg, source, tokenizer):
    from peft import get_peft_model

    from alignment.models import load_sequence_classifier, lora_config

    return get_peft_model(load_sequence_classifier(source, tokenizer, seed=cfg.seed),
                          lora_config(cfg.lora_r, cfg.lora_alpha, task_type="SEQ_CLS"))  # as train_reward_model


def calibrate(session, overrides: dict, train: list[dict], steps: int = 3) -> float:
    """Seconds per step of a setting: a ``steps``-step run, step 1 (warm-up) excluded."""
    from alignment.trainers import train_reward_model
    from alignment.trainers.common import RunContext

    cfg = session.config_for("reward", **overrides, max_steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(Path(tmp) / "calibration", "reward", steps)
        train_reward_model(cfg, session.source, session.tokenizer, train, [], ctx)
    h = ctx.history
    return statistics.mean(b["elapsed_s"] - a["elapsed_s"] for a, b in zip(h, h[1:]))


def shorter_wins(rows: list[dict], tokenizer) -> float:
    """Accuracy of "the shorter response is the chosen one" (ties count half): what length alone gives."""
    def n(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return sum(1.0 if n(r["chosen"]) < n(r["rejected"]) else 0.5 if n(r["chosen"]) == n(r["rejected"]) else 0.0
               for r in rows) / len(rows)


CALIBRATION: dict[tuple, float] = {}


def run_setting(name: str, session, rows: list[dict], heldout_ids: list[int], sample_ids: list[int], args) -> dict:
    import torch

    from alignment.data import fit_to_length
    from alignment.generation import RewardScorer
    from alignment.trainers import train_reward_model
    from alignment.trainers.common import RunContext

    overrides = SETTINGS[name]
    tok = session.tokenizer
    base = session.config_for("reward", **overrides)
    fitted = fit_to_length(rows, tok, base.max_prompt_length, base.max_completion_length)
    by_id = {r["pair_id"]: r for r in fitted}
    held = set(heldout_ids)
    heldout = [by_id[i] for i in heldout_ids]
    sample = [by_id[i] for i in sample_ids]
    train = [r for r in fitted if r["pair_id"] not in held]
    print(f"{name}: {len(train)} training pairs, {len(heldout)} held-out", flush=True)
    calibration = None
    if args.max_steps:
        steps = args.max_steps
    else:
        key = (base.max_prompt_length, base.max_completion_length, base.lora_r, base.batch_size)
        if key not in CALIBRATION:  # the step time does not depend on the learning rate
            CALIBRATION[key] = calibrate(session, overrides, train)
        calibration = CALIBRATION[key]
        steps = max(1, min(300, int(args.budget_s / calibration)))
        print(f"  calibration: {calibration:.2f} s/step -> max_steps {steps}", flush=True)
    cfg = session.config_for("reward", **overrides, max_steps=steps)
    model = build_model(cfg, session.source, tok)
    max_length = cfg.max_prompt_length + cfg.max_completion_length + 16  # as train_reward_model
    eval_every = args.eval_every or max(1, -(-steps // args.evals))
    curve = Curve(model, RewardScorer(model, tok, max_length=max_length), heldout, sample, eval_every, args.budget_s,
                  bf16_eval=not args.eval_fp32)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(Path(tmp) / "reward", "reward", steps, on_progress=curve)
        curve.ctx = ctx
        torch.manual_seed(cfg.seed)
        scorer, _ = train_reward_model(cfg, session.source, tok, train, [], ctx, model=model)
    done = ctx.history[-1]["step"] if ctx.history else 0
    final = curve.point(done, curve.last_s, scorer)
    cfg_keys = ("max_prompt_length", "max_completion_length", "learning_rate", "lora_r", "lora_alpha", "batch_size",
                "max_steps", "bf16", "seed")
    return {
        "name": name, "config": {k: getattr(cfg, k) for k in cfg_keys},
        "token_budget": cfg.max_prompt_length + cfg.max_completion_length,
        "train_pairs": len(train), "heldout_pairs": len(heldout), "train_sample_pairs": len(sample),
        "calibration_s_per_step": calibration, "eval_every": eval_every,
        "steps": done, "pairs_seen": done * cfg.batch_size, "epochs": done * cfg.batch_size / len(train),
        "train_s": round(curve.last_s, 2), "train_cpu_s": round(curve.last_cpu_s, 1),
        "s_per_step": round(curve.last_s / max(done, 1), 3), "tokens": curve.tokens,
        "tokens_per_sequence": curve.tokens / max(2 * done * cfg.batch_size, 1),  # real tokens, template included
        "eval_s": round(curve.eval_s + final["eval_s"], 1),
        "heldout_accuracy": final["heldout_accuracy"], "train_accuracy": final["train_accuracy"],
        "best_heldout_accuracy": max(p["heldout_accuracy"] for p in curve.points),
        "shorter_wins_heldout": shorter_wins(heldout, tok),
        "curve": curve.points, "loss": curve.losses,
    }


def figure(r: dict):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("accuracy vs optimizer steps (batch 4 pairs)", "accuracy vs training seconds"))
    for k, s in enumerate(r["settings"]):
        c = colors[k % len(colors)]
        pts = s["curve"]
        for col, x in ((1, [p["step"] for p in pts]), (2, [p["train_s"] for p in pts])):
            fig.add_trace(go.Scatter(x=x, y=[p["heldout_accuracy"] for p in pts], mode="lines+markers",
                                     line={"color": c, "width": 2.5}, name=f"{s['name']}: held-out",
                                     legendgroup=s["name"], showlegend=col == 1), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=[p["train_accuracy"] for p in pts], mode="lines+markers",
                                     line={"color": c, "width": 1.5, "dash": "dot"}, marker={"symbol": "circle-open"},
                                     name=f"{s['name']}: training pairs", legendgroup=s["name"],
                                     showlegend=col == 1), row=1, col=col)
        batch = [(x["step"], x["batch_accuracy"]) for x in s["loss"] if x.get("batch_accuracy") is not None]
        w = max(1, min(25, len(batch)))
        if len(batch) > w:
            mean = [sum(a for _, a in batch[i - w + 1:i + 1]) / w for i in range(w - 1, len(batch))]
            fig.add_trace(go.Scatter(x=[b[0] for b in batch[w - 1:]], y=mean, mode="lines", opacity=0.45,
                                     line={"color": c, "width": 1}, legendgroup=s["name"],
                                     name=f"{s['name']}: new training batches (mean of {w} steps)"), row=1, col=1)
    for col in (1, 2):
        label = {"annotation_position": "top left"} if col == 2 else {}
        fig.add_hline(y=TARGET_ACCURACY, line={"color": "black", "dash": "dash", "width": 1}, row=1, col=col,
                      **({"annotation_text": f"target {TARGET_ACCURACY:.0%}"} if col == 2 else {}), **label)
        fig.add_hline(y=0.5, line={"color": "grey", "dash": "dot", "width": 1}, row=1, col=col,
                      **({"annotation_text": "chance"} if col == 2 else {}), **label)
        shorter = r["dataset"].get("shorter_wins_untruncated_heldout")
        if shorter is not None:
            fig.add_hline(y=shorter, line={"color": "#7f7f7f", "dash": "dashdot", "width": 1}, row=1, col=col,
                          **({"annotation_text": f"shorter answer wins: {shorter:.0%}"} if col == 2 else {}),
                          **({"annotation_position": "bottom left"} if col == 2 else {}))
    fig.add_vline(x=r["args"]["budget_s"], line={"color": "grey", "width": 1}, row=1, col=2,
                  annotation_text=f"budget {r['args']['budget_s']:.0f} s", annotation_position="bottom left")
    m = r["machine"]
    fig.update_layout(
        title={"text": f"Reward model ({r['model_name']}, LoRA + scalar head) on {Path(r['dataset']['source']).name}: "
                       f"{r['dataset']['heldout_pairs']} held-out pairs, {r['dataset']['train_sample_pairs']} "
                       f"training pairs<br><sup>{m['cpu']}, {m['cores']} cores, "
                       f"{', '.join(m['cpu_features']) or 'no bf16 CPU features'}; solid: held-out pairs, "
                       f"dotted: fixed sample of training pairs, faint: TRL's accuracy on each new batch before "
                       f"its update</sup>",
               "font": {"size": 15}},
        width=1200, height=520, template="plotly_white", legend={"orientation": "h", "y": -0.18},
        margin={"l": 60, "r": 20, "t": 80, "b": 110})
    fig.update_yaxes(title_text="accuracy (r(chosen) > r(rejected))", tickformat=".0%", row=1, col=1)
    fig.update_xaxes(rangemode="tozero")
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="training seconds (evaluation excluded)", row=1, col=2)
    return fig


def write_figure(r: dict, out: Path, png: str | None) -> None:
    """``<out>/rm_learning_curve.html`` (plotly.js embedded: opens offline) and the PNG (``png``; None:
    ``<out>/rm_learning_curve.png``; ``"none"``: no PNG)."""
    out.mkdir(parents=True, exist_ok=True)
    html = out / "rm_learning_curve.html"
    figure(r).write_html(html, include_plotlyjs=True)
    if png != "none":
        render_png(html, Path(png or out / "rm_learning_curve.png"))


def render_png(html: Path, png: Path, width: int = 1200, height: int = 520) -> None:
    """Screenshot of the HTML figure with Debian's headless chromium (Playwright; no kaleido in the venv)."""
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width + 40, "height": height + 40}, device_scale_factor=1.5)
        page.goto(html.resolve().as_uri())
        page.wait_for_selector(".main-svg")
        page.locator(".plotly-graph-div").first.screenshot(path=str(png))
        browser.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    ap.add_argument("--budget-s", type=float, default=180.0, help="training seconds per setting (evaluation excluded)")
    ap.add_argument("--eval-pairs", type=int, default=200, help="held-out pairs (the same in every setting)")
    ap.add_argument("--train-eval-pairs", type=int, default=50, help="fixed sample of training pairs scored")
    ap.add_argument("--eval-fp32", action="store_true", help="score in fp32 (default: bf16 autocast, about 3x faster)")
    ap.add_argument("--evals", type=int, default=3, help="evaluation points per setting (the last one after training)")
    ap.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (default: from --evals)")
    ap.add_argument("--max-steps", type=int, default=0, help="steps per setting (default: planned from the budget)")
    ap.add_argument("--dataset", default=str(HH_DEFAULT))
    ap.add_argument("--model", default=None, help="model name (default: the embedded SmolLM2-135M-Instruct; 'tiny')")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="outputs/benchmark")
    ap.add_argument("--png", default=None, help="PNG path (default <out>/rm_learning_curve.png; 'none' skips it)")
    ap.add_argument("--replot", metavar="JSON", help="only draw the figure (HTML, PNG) of an earlier results JSON")
    args = ap.parse_args(argv)
    if args.replot:
        write_figure(json.loads(Path(args.replot).read_text()), Path(args.out), args.png)
        return 0
    CALIBRATION.clear()
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    from alignment.data import fit_to_length, load_preference_dataset
    from alignment.session import Session

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    r: dict = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(),
               "load_average_before": os.getloadavg(), "args": vars(args), "target_accuracy": TARGET_ACCURACY}
    session = Session(**({"model_name": args.model} if args.model else {}), seed=args.seed)
    r["model"] = session.setup_model()["description"]
    r["model_name"] = session.model_name.split("/")[-1]
    rows, report = load_preference_dataset(args.dataset)
    rows = [dict(row, pair_id=i) for i, row in enumerate(rows)]
    cfgs = [session.config_for("reward", **SETTINGS[s]) for s in args.settings]
    smallest = fit_to_length(rows, session.tokenizer, min(c.max_prompt_length for c in cfgs),
                             min(c.max_completion_length for c in cfgs))
    ids = [row["pair_id"] for row in smallest]  # fit every setting's budget
    random.Random(args.seed).shuffle(ids)
    n_eval = min(args.eval_pairs, len(ids) // 2)
    heldout_ids, sample_ids = ids[:n_eval], ids[n_eval:n_eval + args.train_eval_pairs]

    def n_tokens(text):
        return len(session.tokenizer(text, add_special_tokens=False)["input_ids"])

    over = sum(max(n_tokens(row["chosen"]), n_tokens(row["rejected"])) > 32 for row in rows)
    r["dataset"] = {"source": os.path.relpath(args.dataset, ROOT) if Path(args.dataset).exists() else args.dataset,
                    "pairs": len(rows), "load_report": report.summary(), "heldout_pairs": len(heldout_ids),
                    "train_sample_pairs": len(sample_ids), "responses_over_32_tokens": over / len(rows),
                    "shorter_wins_untruncated_heldout": shorter_wins([rows[i] for i in heldout_ids], session.tokenizer)}
    r["settings"] = []
    for name in args.settings:
        r["settings"].append(run_setting(name, session, rows, heldout_ids, sample_ids, args))
    best = max(r["settings"], key=lambda s: s["heldout_accuracy"])
    r["best"] = {"setting": best["name"], "heldout_accuracy": best["heldout_accuracy"], "train_s": best["train_s"]}
    r["target_met"] = any(round(s["heldout_accuracy"], 6) >= TARGET_ACCURACY and s["train_s"] <= args.budget_s * 1.05
                          for s in r["settings"])
    r["load_average_after"] = os.getloadavg()
    r["wall_s"] = round(time.perf_counter() - started, 1)
    (out / "rm_learning_curve.json").write_text(json.dumps(r, indent=1))
    write_figure(r, out, args.png)
    print("\n| setting | steps | tokens/sequence (budget) | lr | LoRA r | train acc | held-out acc | train s |")
    for s in r["settings"]:
        c = s["config"]
        print(f"| {s['name']} | {s['steps']} | {s['tokens_per_sequence']:.0f} ({s['token_budget']}) | "
              f"{c['learning_rate']:g} | {c['lora_r']} | {s['train_accuracy']:.1%} | {s['heldout_accuracy']:.1%} | "
              f"{s['train_s']:.0f} |")
    print(f"target {TARGET_ACCURACY:.0%} held-out within {args.budget_s:.0f}s met: {r['target_met']}; "
          f"wall {r['wall_s']:.0f}s; load {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
