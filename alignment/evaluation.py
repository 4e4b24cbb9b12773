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

# The phases ``evaluate_models`` reports to its ``progress(phase, done, total)`` callback, in order, with their
# units: decoded token steps (every batch decodes up to max_new_tokens), log-ratio batches, scoring batches.
PHASES = ("generating answers", "KL to base", "scoring")
# Share of the whole evaluation's wall time per step, loading included (the progress bar's fractions), from the
# classroom preset on the 2-core CPU: evaluation about 50 s, of which the log-ratios 11 s (README, "Where the time
# goes"); loading the reward model, the base model and the adapters a few seconds; scoring 120 answers a few more.
PROGRESS_SHARE = {"loading models": 0.06, PHASES[0]: 0.66, PHASES[1]: 0.2, PHASES[2]: 0.08}


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


# Two answers whose reward-model scores differ by at most this much are a tie: the same text scored in batches
# with different padding differs by about 1e-7, which is float noise, not a preference.
TIE_TOLERANCE = 1e-4


def win_outcomes(model_scores, base_scores, same_answer=None, tol: float = TIE_TOLERANCE) -> np.ndarray:
    """Per prompt: 1 (the model's answer scores higher than base's), 0.5 (a tie), 0 (lower).

    A tie is the same answer as base (``same_answer[i]``: identical token sequences) or a score difference of at
    most ``tol``; never float noise. Shapes: equal-length sequences, one entry per prompt -> ``(n,)``.
    """
    a, b = np.asarray(model_scores, dtype=float), np.asarray(base_scores, dtype=float)
    tie = np.abs(a - b) <= tol
    if same_answer is not None:
        tie |= np.asarray(same_answer, dtype=bool)
    return np.where(tie, 0.5, (a > b).astype(float))


def bootstrap_win_rate(model_scores, base_scores, same_answer=None, tol: float = TIE_TOLERANCE,
                       n_resamples: int = 2000, seed: int = 0) -> dict:
    """Win rate of a model over base, per prompt by reward-model score, ties counting 1/2 (``win_outcomes``),
    with a percentile bootstrap 95% interval over prompts (Efron & Tibshirani 1993, Ch. 13).

    Returns:
        ``{"win_rate", "ci_low", "ci_high", "n", "wins", "ties", "losses", "tie_rule"}``.
    """
    wins = win_outcomes(model_scores, base_scores, same_answer, tol)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(wins), size=(n_resamples, len(wins)))
    boots = wins[idx].mean(axis=1)
    return {"win_rate": float(wins.mean()), "ci_low": float(np.percentile(boots, 2.5)),
            "ci_high": float(np.percentile(boots, 97.5)), "n": int(len(wins)), "wins": int((wins == 1).sum()),
            "ties": int((wins == 0.5).sum()), "losses": int((wins == 0).sum()),
            "tie_rule": f"identical answer, or reward scores within {tol:g}"}


def _distribution(values: list[float]) -> dict:
    q = np.percentile(values, [0, 25, 50, 75, 100]).tolist() if values else [0.0] * 5
    return {"mean": float(np.mean(values)) if values else 0.0, "std": float(np.std(values)) if values else 0.0,
            "min": q[0], "p25": q[1], "median": q[2], "p75": q[3], "max": q[4]}


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _decoder(policy):
    """The module whose forward runs once per decoded token (the causal LM under a PeftModel), or None."""
    model = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    return model if isinstance(model, torch.nn.Module) else None


def _generate_reporting(policy, tokenizer, rows, adapters, keys, decoding: DecodingConfig, progress):
    """``generate_shared_noise`` one batch of ``decoding.batch_size`` rows at a time (the same batches, hence the
    same answers, as one call), reporting ``progress("generating answers", token steps done, total)`` after every
    decoded token: a forward hook on the decoder counts its forward passes (one per token; a batch whose rows all
    end early jumps to its full ``max_new_tokens``)."""
    steps, out = decoding.max_new_tokens, []
    batches = _batches(len(rows), decoding.batch_size)
    total = len(batches) * steps
    decoder = _decoder(policy)
    for b, idx in enumerate(batches):
        handle = None
        if decoder is not None:
            count = [0]

            def on_forward(module, args, output, _done=b * steps, _count=count):
                _count[0] += 1
                progress(PHASES[0], _done + min(_count[0], steps), total)

            handle = decoder.register_forward_hook(on_forward)
        try:
            out += generate_shared_noise(policy, tokenizer, rows[idx.start:idx.stop],
                                         adapters[idx.start:idx.stop] if adapters is not None else None,
                                         keys[idx.start:idx.stop], decoding.max_new_tokens, decoding.temperature,
                                         decoding.do_sample, decoding.seed, decoding.batch_size)
        finally:
            if handle is not None:
                handle.remove()
        progress(PHASES[0], (b + 1) * steps, total)
    return out


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def _answer_all(policy, tokenizer, scorer, prompts: list, model_names: list[str], decoding: DecodingConfig,
                progress=None):
    """Every model answers every prompt in shared batches; returns ``{name: (gens, kls, rewards)}``.

    ``progress``: optional ``callback(phase, done, total)`` with ``phase`` one of ``PHASES``, called as each
    decoded token, log-ratio batch and scoring batch completes. One path with or without it: the work is split
    into the batches the generator, ``sequence_log_ratio`` and the scorer use anyway, so the numbers are the same.
    """
    progress = progress or _no_progress
    mixed = hasattr(policy, "disable_adapter")
    if not mixed and model_names != ["base"]:
        raise ValueError("Only 'base' can be answered by a model without adapters")
    rows = [p for _ in model_names for p in prompts]
    adapters = ["__base__" if n == "base" else n for n in model_names for _ in prompts]
    keys = [i for _ in model_names for i in range(len(prompts))]  # same prompt -> same noise, for every model
    gens = _generate_reporting(policy, tokenizer, rows, adapters if mixed else None, keys, decoding, progress)
    kls = [0.0] * len(rows)
    aligned = [r for r, a in enumerate(adapters) if a != "__base__"]
    if aligned:
        temp = decoding.temperature if decoding.do_sample else 1.0
        recorded = [gens[r].logps for r in aligned]  # log pi(y_t) recorded while sampling: only the base forward runs
        use_recorded = all(lp is not None for lp in recorded)
        batches = _batches(len(aligned), decoding.logprob_batch_size)
        ratios = []
        for b, idx in enumerate(batches):  # one log-ratio batch of logprob_batch_size rows per call
            part = [aligned[j] for j in idx]
            ratios += sequence_log_ratio(policy, tokenizer, [rows[r] for r in part], [gens[r].token_ids for r in part],
                                         temp, decoding.logprob_batch_size, adapter_names=[adapters[r] for r in part],
                                         policy_logps=[recorded[j] for j in idx] if use_recorded else None)
            progress(PHASES[1], b + 1, len(batches))
        for r, v in zip(aligned, ratios):
            kls[r] = v
    if scorer is None:
        rewards = [None] * len(rows)
    else:
        rewards, batches = [], _batches(len(rows), getattr(scorer, "batch_size", 16))
        for b, idx in enumerate(batches):  # the scorer's own batches, one per call
            rewards += scorer.score(rows[idx.start:idx.stop], [g.text for g in gens[idx.start:idx.stop]]).tolist()
            progress(PHASES[2], b + 1, len(batches))
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
        progress: optional ``callback(phase, done, total)``: ``phase`` is one of ``PHASES`` ("generating answers":
            decoded token steps of all batches; "KL to base": log-ratio batches; "scoring": reward-model batches),
            ``done`` of ``total`` units finished. The answers and numbers do not depend on it.

    Returns:
        ``{"decoding", "models": {name: {"summary", "samples"}}}`` with KL, win rates and per-category means.
    """
    decoding = decoding or DecodingConfig()
    prompts = [p["prompt"] for p in eval_prompts]
    answered = _answer_all(policy, tokenizer, scorer, prompts, model_names, decoding, progress)
    results: dict[str, dict] = {}
    for name, (gens, kls, scores) in answered.items():
        samples = [{"prompt": p["prompt"], "category": p["category"], "response": g.text, "reward": s,
                    "length_tokens": g.length, "ended_with_eos": g.ended_with_eos, "kl_to_base": k}
                   for p, g, s, k in zip(eval_prompts, gens, scores, kls)]
        results[name] = {"samples": samples}
    base_scores = [s["reward"] for s in results["base"]["samples"]] if "base" in results else None
    base_ids = [g.token_ids for g in answered["base"][0]] if "base" in answered else None
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
            same = [list(g.token_ids) == list(b) for g, b in zip(answered[name][0], base_ids)]
            summary["win_rate_vs_base"] = bootstrap_win_rate(rewards, base_scores, same, seed=decoding.seed)
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
