"""Side-by-side evaluation of the base model and the aligned adapters on the evaluation prompts.

All models share one copy of the base weights: each trained adapter is loaded into one ``PeftModel`` under
its method's name, and "base" is that model with adapters disabled. Every model generates with the same
seeded decoding settings (same seed, same prompts, same batches), so differences come from the weights.

Per model: reward-model score (mean, distribution), response length (tokens), KL to the base model, win
rate against base by reward-model score with a bootstrap 95% interval, per-category means, per-sample
records.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .generation import RewardScorer, generate, sequence_log_ratio


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
    batch_size: int = 16


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


def evaluate_models(policy, tokenizer, scorer: RewardScorer, eval_prompts: list[dict], model_names: list[str],
                    decoding: DecodingConfig | None = None, progress=None) -> dict:
    """Generate, score and compare.

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
    results: dict[str, dict] = {}
    for name in model_names:
        if name == "base":
            with policy.disable_adapter():
                gens = generate(policy, tokenizer, prompts, decoding.max_new_tokens, decoding.temperature,
                                decoding.do_sample, decoding.seed, decoding.batch_size)
            kls = [0.0] * len(gens)
        else:
            policy.set_adapter(name)
            gens = generate(policy, tokenizer, prompts, decoding.max_new_tokens, decoding.temperature,
                            decoding.do_sample, decoding.seed, decoding.batch_size)
            kls = sequence_log_ratio(policy, tokenizer, prompts, [g.token_ids for g in gens],
                                     decoding.temperature if decoding.do_sample else 1.0, decoding.batch_size)
        scores = scorer.score(prompts, [g.text for g in gens]).tolist()
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
    """One prompt, every model, identical decoding (same seed): the Compare tab's side-by-side view.

    Args:
        policy: a ``PeftModel`` with one adapter per aligned model, or a plain model when only ``"base"`` is asked.
        scorer: the reward model, or None (scores are then None).

    Returns:
        ``{name: {"response", "reward", "length_tokens", "ended_with_eos", "kl_to_base"}}``; ``kl_to_base`` is the
        single-sample log-ratio log pi(y|x) - log pi_base(y|x) of that answer (nats), 0 for base.
    """
    decoding = decoding or DecodingConfig()
    out = {}
    for name in model_names:
        if name == "base":
            ctx = policy.disable_adapter() if hasattr(policy, "disable_adapter") else contextlib.nullcontext()
            with ctx:
                gen = generate(policy, tokenizer, [prompt], decoding.max_new_tokens, decoding.temperature,
                               decoding.do_sample, decoding.seed, 1)[0]
            kl = 0.0
        else:
            policy.set_adapter(name)
            gen = generate(policy, tokenizer, [prompt], decoding.max_new_tokens, decoding.temperature,
                           decoding.do_sample, decoding.seed, 1)[0]
            kl = sequence_log_ratio(policy, tokenizer, [prompt], [gen.token_ids],
                                    decoding.temperature if decoding.do_sample else 1.0)[0]
        reward = float(scorer.score([prompt], [gen.text])[0]) if scorer is not None else None
        out[name] = {"response": gen.text, "reward": reward, "length_tokens": gen.length,
                     "ended_with_eos": gen.ended_with_eos, "kl_to_base": kl}
    return out

