"""Side-by-side evaluation of the base model and the aligned adapters on the evaluation prompts.

All models share one copy of the base weights: each trained adapter is loaded into one ``PeftModel`` under
its method's name, and "base" is that model with adapters disabled. Every model generates with the same
seeded decoding settings (same seed, same prompts, same batches), so differences come from the weights.

Per model: reward-model score (mean, distribution), response length (tokens), KL to the base model, win
rate against base by reward-model score with a bootstrap 95% interval, per-category means, per-sample
records.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .generation import RewardScorer, generate_shared_noise, sequence_log_ratio


@dataclass
class DecodingConfig:
    """Decoding settings shared by every evaluated model.

    Sampling at ``temperature`` (top-k/top-p off) makes the mean per-sequence log-ratio
    log pi(y|x) - log pi_base(y|x) on a model's own samples an unbiased estimate of KL(pi_T || pi_base_T)
    between the temperature-scaled distributions (nats).
    """

    max_new_tokens: int = 48
    temperature: float = 0.7
    do_sample: bool = True
    seed: int = 1234
    batch_size: int = 128  # rows (prompt x model) per generate call
    logprob_batch_size: int = 16  # rows per log-ratio forward: its (B, T, V) fp32 logits are 6.5 MB per row


def load_policy_with_adapters(base_model, adapters: dict[str, str | Path]):
    """Wrap ``base_model`` in one ``PeftModel`` holding every adapter under its name (no weight copies).

    Raises:
        ValueError: no adapter given.
    """
    from peft import PeftModel

    if not adapters:
        raise ValueError("No trained adapter to evaluate")
    names = list(adapters)
    model = PeftModel.from_pretrained(base_model, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    return model.eval()


def bootstrap_win_rate(model_scores, base_scores, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Win rate of a model over base, per prompt by reward-model score (ties count 1/2), with a percentile
    bootstrap 95% interval over prompts (Efron & Tibshirani 1993, Ch. 13).

    Shapes: two equal-length sequences of floats (one per prompt) -> ``{"win_rate", "ci_low", "ci_high"}``.
    """
    a, b = np.asarray(model_scores, dtype=float), np.asarray(base_scores, dtype=float)
    wins = (a > b).astype(float) + 0.5 * (a == b)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(wins), size=(n_resamples, len(wins)))
    boots = wins[idx].mean(axis=1)
    return {"win_rate": float(wins.mean()), "ci_low": float(np.percentile(boots, 2.5)),
            "ci_high": float(np.percentile(boots, 97.5))}


def _distribution(values: list[float]) -> dict:
    q = np.percentile(values, [0, 25, 50, 75, 100]).tolist() if values else [0.0] * 5
    return {"mean": float(np.mean(values)) if values else 0.0, "std": float(np.std(values)) if values else 0.0,
            "min": q[0], "p25": q[1], "median": q[2], "p75": q[3], "max": q[4]}


def _answer_all(policy, tokenizer, scorer, prompts: list, model_names: list[str], decoding: DecodingConfig):
    """Every model answers every prompt in shared batches; returns ``{name: (gens, kls, rewards)}``."""
    mixed = hasattr(policy, "disable_adapter")
    if not mixed and model_names != ["base"]:
        raise ValueError("Only 'base' can be answered by a model without adapters")
    rows = [p for _ in model_names for p in prompts]
    adapters = ["__base__" if n == "base" else n for n in model_names for _ in prompts]
    keys = [i for _ in model_names for i in range(len(prompts))]  # same prompt -> same noise, for every model
    gens = generate_shared_noise(policy, tokenizer, rows, adapters if mixed else None, keys, decoding.max_new_tokens,
                                 decoding.temperature, decoding.do_sample, decoding.seed, decoding.batch_size)
    kls = [0.0] * len(rows)
    aligned = [r for r, a in enumerate(adapters) if a != "__base__"]
    if aligned:
        temp = decoding.temperature if decoding.do_sample else 1.0
        recorded = [gens[r].logps for r in aligned]  # log pi(y_t) recorded while sampling: only the base forward runs
        ratios = sequence_log_ratio(policy, tokenizer, [rows[r] for r in aligned], [gens[r].token_ids for r in aligned],
                                    temp, decoding.logprob_batch_size, adapter_names=[adapters[r] for r in aligned],
                                    policy_logps=recorded if all(lp is not None for lp in recorded) else None)
        for r, v in zip(aligned, ratios):
            kls[r] = v
    rewards = scorer.score(rows, [g.text for g in gens]).tolist() if scorer is not None else [None] * len(rows)
    n = len(prompts)
    return {name: (gens[j * n:(j + 1) * n], kls[j * n:(j + 1) * n], rewards[j * n:(j + 1) * n])
            for j, name in enumerate(model_names)}


def evaluate_models(policy, tokenizer, scorer: RewardScorer, eval_prompts: list[dict], model_names: list[str],
                    decoding: DecodingConfig | None = None, progress=None) -> dict:
    """Generate, score and compare.

    Every model answers every prompt in the same batches (PEFT mixed-adapter batches), with shared sampling
    noise per prompt (``GumbelNoiseSampler``): the only difference between two models' answers is the weights.

    Args:
        policy: ``PeftModel`` holding an adapter per aligned model (``load_policy_with_adapters``).
        eval_prompts: ``[{"category", "prompt"}]``.
        model_names: e.g. ``["base", "dpo", "ppo", "grpo"]``; ``"base"`` means adapters disabled.
        progress: optional ``callback(model_name)`` called after each model.

    Returns:
        ``{"decoding", "models": {name: {"summary", "samples"}}}`` with KL, win rates and per-category means.
    """
    decoding = decoding or DecodingConfig()
    prompts = [p["prompt"] for p in eval_prompts]
    answered = _answer_all(policy, tokenizer, scorer, prompts, model_names, decoding)
    results: dict[str, dict] = {}
    for name, (gens, kls, scores) in answered.items():
        samples = [{"prompt": p["prompt"], "category": p["category"], "response": g.text, "reward": s,
                    "length_tokens": g.length, "ended_with_eos": g.ended_with_eos, "kl_to_base": k}
                   for p, g, s, k in zip(eval_prompts, gens, scores, kls)]
        results[name] = {"samples": samples}
        if progress:
            progress(name)
    base_scores = [s["reward"] for s in results["base"]["samples"]] if "base" in results else None
    for name, res in results.items():
        samples = res["samples"]
        rewards = [s["reward"] for s in samples]
        cats: dict[str, list[float]] = {}
        for s in samples:
            cats.setdefault(s["category"], []).append(s["reward"])
        summary = {
            "mean_reward": statistics.fmean(rewards),
            "reward_distribution": _distribution(rewards),
            "mean_length_tokens": statistics.fmean(s["length_tokens"] for s in samples),
            "eos_rate": statistics.fmean(float(s["ended_with_eos"]) for s in samples),
            "kl_to_base": statistics.fmean(s["kl_to_base"] for s in samples),
            "per_category_mean_reward": {c: statistics.fmean(v) for c, v in sorted(cats.items())},
            "n_prompts": len(samples),
        }
        if base_scores is not None and name != "base":
            summary["win_rate_vs_base"] = bootstrap_win_rate(rewards, base_scores, seed=decoding.seed)
        res["summary"] = summary
    torch.manual_seed(decoding.seed)
    return {"decoding": asdict(decoding), "models": results}


@torch.no_grad()
def compare_answers(policy, tokenizer, scorer: RewardScorer | None, prompt: str, model_names: list[str],
                    decoding: DecodingConfig | None = None) -> dict[str, dict]:
    """One prompt, every model, identical decoding and shared sampling noise: the Compare tab's side-by-side view.

    Args:
        policy: a ``PeftModel`` with one adapter per aligned model, or a plain model when only ``"base"`` is asked.
        scorer: the reward model, or None (scores are then None).

    Returns:
        ``{name: {"response", "reward", "length_tokens", "ended_with_eos", "kl_to_base"}}``; ``kl_to_base`` is the
        single-sample log-ratio log pi(y|x) - log pi_base(y|x) of that answer (nats), 0 for base.
    """
    answered = _answer_all(policy, tokenizer, scorer, [prompt], model_names, decoding or DecodingConfig())
    return {name: {"response": g[0].text, "reward": r[0], "length_tokens": g[0].length,
                   "ended_with_eos": g[0].ended_with_eos, "kl_to_base": k[0]}
            for name, (g, k, r) in answered.items()}
