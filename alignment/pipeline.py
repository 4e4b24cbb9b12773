"""The pipeline: dataset -> trainer -> checkpoint (run directory) -> generation -> evaluation -> report.

``train_run`` trains one method into one run directory; the headless CLI calls it in-process, and every worker
process of the app's queue calls it too (``alignment.serving.worker``). ``evaluate_runs`` scores base and the
chosen policy runs; ``report_setup`` describes what was compared for the report files
(``alignment.report.write_reports``).
"""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path

from .registry import TrainInputs, method_spec
from .trainers.common import RunContext, write_json

logger = logging.getLogger("class7")

def load_reward_scorer(session, adapter: str | Path):
    """The reward model of a run's ``adapter`` directory as a ``RewardScorer``, scoring by default in the precision
    it was trained in (its run's ``bf16``: bfloat16 autocast) with the length budget it was trained with.

    Raises:
        RuntimeError: no trained adapter there (the message says to train the reward model first).
    """
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise RuntimeError("PPO, GRPO and the evaluation need a trained reward model: run the 'reward' method first")
    from peft import PeftModel

    from .generation import RewardScorer
    from .models import load_sequence_classifier

    session.setup_model()
    base = load_sequence_classifier(session.source, session.tokenizer, seed=session.seed)
    # the length budget it was trained with (its run's config.json: the gold model's is its reward run's)
    saved = trained_config(adapter.parent) or trained_config(adapter.parent.parent) or session.configs["reward"].to_dict()
    return RewardScorer(PeftModel.from_pretrained(base, str(adapter)).eval(), session.tokenizer,
                        max_length=saved["max_prompt_length"] + saved["max_completion_length"] + 16,
                        bf16=bool(saved.get("bf16", False)))


def gold_adapter(reward_adapter: str | Path | None) -> Path | None:
    """The gold reward model's adapter beside a reward run's ``adapter`` (``<run>/gold/adapter``), or None when that
    run trained none (``RewardModelConfig.gold_model``)."""
    if not reward_adapter:
        return None
    gold = Path(reward_adapter).parent / "gold" / "adapter"
    return gold if (gold / "adapter_config.json").is_file() else None


def train_run(session, method: str, cfg, data: dict, run_dir: str | Path, *, reward_adapter=None, reward_scorer=None,
              stop_event=None, on_progress=None, description: dict | None = None) -> dict:
    """Train ``method`` with ``cfg`` on ``data["train"]`` into ``run_dir``; a failure is recorded there and re-raised.

    Args:
        session: the ``alignment.session.Session`` (model source, tokenizer, evaluation prompts).
        cfg: the resolved, validated config (``session.config_for``); written to ``config.json`` as trained.
        data: ``Session.load_data`` output.
        reward_adapter / reward_scorer: the reward model PPO and GRPO optimise (a run's adapter directory, or a
            loaded ``RewardScorer``); DPO's film strip is scored by it when given. The gold reward model beside
            ``reward_adapter`` (``gold_adapter``) scores PPO's and GRPO's rollouts and the film strips.
        stop_event, on_progress: see ``RunContext``.
        description: extra ``config.json`` entries (owner, dataset choice, job id).

    Returns:
        ``run_info.json``'s content plus ``history`` and ``run_dir`` (and ``scorer`` for the reward model).

    Raises:
        RuntimeError: PPO/GRPO without a reward model; anything the trainer raises (recorded in ``error.log``).
    """
    spec = method_spec(method)
    ctx = RunContext(Path(run_dir), method, cfg.max_steps, stop_event, on_progress)
    ctx.write_config({"method": method, "config": cfg.to_dict(), "model": session.setup_model(),
                      "dataset": data["load_report"], "train_pairs": len(data["train"]), **(description or {})})
    model = None
    try:
        gold_scorer = None
        watch = (spec.is_policy and cfg.film_strip_every > 0 and reward_adapter is not None
                 and (Path(reward_adapter) / "adapter_config.json").is_file())  # DPO's film strip, when there is one
        if reward_scorer is None and (spec.needs_reward_model or watch):
            ctx.phase("loading the reward model")
            reward_scorer = load_reward_scorer(session, Path(reward_adapter or "missing"))
        gold = gold_adapter(reward_adapter)
        if gold is not None and (spec.needs_reward_model or watch):  # PPO's and GRPO's rollouts, the film strips
            ctx.phase("loading the gold reward model")
            gold_scorer = load_reward_scorer(session, gold)
        # the reward model may have its own length budget (Session.fit_for); the policies share the session's
        train, heldout = session.fit_for(cfg, data) if method == "reward" else (data["train"], data["heldout"])
        inputs = TrainInputs(session.source, session.tokenizer, train, heldout, reward_scorer,
                             gold_scorer, data.get("eval_prompts") or [])
        model, extra = spec.train(cfg, inputs, ctx)
        if model is not None:
            if ctx.stopped_early:  # Stop should end the run now: a stopped run keeps its adapter and metrics
                logger.info("%s stopped: no samples.json (it would take several seconds more)", method)
            else:
                ctx.phase("writing samples")
                extra["samples"] = write_samples(session, model, ctx.run_dir, cfg, data["eval_prompts"])
    except BaseException as exc:
        ctx.fail(exc)
        raise
    finally:
        model = None
        gc.collect()  # TRL trainers hold reference cycles: free this run's weights before the next one
    extra["adapter"] = str(ctx.run_dir / "adapter")
    info = ctx.finish(**extra)  # extras (reward model held-out accuracy) survive restarts in run_info.json
    return {**info, "history": ctx.history, "run_dir": str(ctx.run_dir)}


def write_samples(session, model, run_dir: Path, cfg, eval_prompts: list[dict], n: int = 5) -> str:
    """The trained policy's answers to the first ``n`` evaluation prompts, in ``samples.json``; returns its path."""
    from .generation import generate

    prompts = eval_prompts[:n]
    gens = generate(model, session.tokenizer, [p["prompt"] for p in prompts], cfg.max_completion_length, seed=cfg.seed)
    path = Path(run_dir) / "samples.json"
    write_json(path, [{"prompt": p["prompt"], "response": g.text, "length_tokens": g.length} for p, g in zip(prompts, gens)])
    return str(path)


def read_run(run_dir: str | Path) -> dict:
    """A finished run as the report reads it: ``run_info.json`` plus ``history``, ``run_dir`` and ``adapter``."""
    from .trainers.common import read_metrics

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
    return {**info, "history": read_metrics(run_dir / "metrics.jsonl"), "run_dir": str(run_dir),
            "adapter": str(run_dir / "adapter")}


def trained_config(run_dir: str | Path | None) -> dict | None:
    """The config a run trained with (its ``config.json``), or None."""
    path = Path(run_dir) / "config.json" if run_dir else None
    if path is not None and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8")).get("config")
        if isinstance(saved, dict):
            return saved
    return None


def evaluate_runs(session, data: dict, policies: dict[str, str | Path], reward_scorer, progress=None,
                  samples_per_prompt: int = 1, gold_scorer=None) -> dict:
    """Generate for every evaluation prompt from base and each policy adapter; score, KL, win rates by evaluator
    (``alignment.evaluation.evaluate_models``: the proxy reward model, and the rules where the prompts carry them).

    Args:
        samples_per_prompt: answers per prompt and model; the bootstrap resamples prompts with all their answers.
        gold_scorer: the gold reward model (``RewardModelConfig.gold_model``), evaluated as ``gold_rm``, or None.
        policies: ``{model name: adapter directory}``, e.g. ``{"dpo": ".../runs/dpo/<id>/adapter"}``.
        reward_scorer: the reward model that scores (``load_reward_scorer``).
        progress: ``callback(phase, done, total, detail)`` or None; see ``alignment.evaluation.evaluate_models``.

    Raises:
        RuntimeError: no policy to evaluate.
    """
    from .evaluation import PHASES, DecodingConfig, evaluate_models, load_policy_with_adapters
    from .models import load_causal_lm

    if not policies:
        raise RuntimeError("Train at least one policy (DPO, PPO or GRPO) before evaluating")
    report = progress or (lambda *a: None)
    steps = session.lengths.max_completion_length

    def step(phase: str, done: int, total: int) -> None:
        if phase == PHASES[0]:  # decoded token steps, max_new_tokens per batch
            batch = max(1, -(-done // steps))
            token = done - (batch - 1) * steps
            report(phase, done, total, f"batch {batch} of {total // steps}, token {token} of {steps}")
        else:
            report(phase, done, total, f"batch {done} of {total}")

    names = list(policies)
    report("loading models", 2, 3, "the base model and the " + ", ".join(m.upper() for m in names) + " adapters")
    policy = load_policy_with_adapters(load_causal_lm(session.source, session.tokenizer, seed=session.seed), policies)
    decoding = DecodingConfig(max_new_tokens=steps, seed=session.seed)
    report(PHASES[0], 0, 1, f"{len(names) + 1} models x {len(data['eval_prompts'])} prompts")
    return evaluate_models(policy, session.tokenizer, reward_scorer, data["eval_prompts"], ["base", *names],
                           decoding, progress=step, samples_per_prompt=samples_per_prompt, gold_scorer=gold_scorer)


def report_setup(session, data: dict | None, dataset_source: str, runs: dict[str, dict]) -> dict:
    """The report's ``setup``: model, preset, dataset and what each compared run trained with."""
    return {"model": session.setup_model(), "preset": session.preset,
            "dataset": {"source": dataset_source, **(data or {}).get("load_report", {}),
                        "statistics": (data or {}).get("statistics")},
            "configs": {**{m: trained_config((runs.get(m) or {}).get("run_dir")) or cfg.to_dict()
                           for m, cfg in session.configs.items()},
                        **{n: trained_config(r.get("run_dir")) for n, r in runs.items() if n not in session.configs}},
            "runs": {m: r.get("run_dir") for m, r in runs.items()}}
