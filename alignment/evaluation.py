"""Side-by-side evaluation of the base model and the aligned adapters on the evaluation prompts.

All models share one copy of the base weights: each trained adapter is loaded into one ``PeftModel`` under
its method's name, and "base" is that model with adapters disabled. Every model generates with the same
seeded decoding settings (same seed, same prompts, same batches), so differences come from the weights.

Per model: reward-model score (mean, distribution), response length (tokens), KL to the base model with a 95%
interval, per-category means, per-sample records; per aligned model, the win rate against base by each evaluator
(``EVALUATORS``: the reward model the run trained, ``proxy_rm``; an optional second reward model, ``gold_rm``; the
programmatic checks of ``alignment.rules``, ``rules``) with a prompt-level bootstrap 95% interval, and the
length-controlled win rate next to it (``alignment.stats``). With ``samples_per_prompt`` > 1 each prompt is answered
several times, with different sampling noise per sample and the same noise for every model. The LLM judge and the
students' arena votes are added to an evaluation afterwards, when available (``alignment.judge.judge_evaluation``,
``alignment.arena.students_evaluation``).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .generation import RewardScorer, generate_shared_noise, grouped_batches, sequence_log_ratio
from .registry import method_of
from .rules import rule_for, score_answer
from .stats import (TIE_TOLERANCE, kl_interval, length_controlled_win_rate, paired_bootstrap_win_rate,
                    win_outcomes)

__all__ = ["EVALUATORS", "PHASES", "PROGRESS_SHARE", "TIE_TOLERANCE", "DecodingConfig", "bootstrap_win_rate",
           "compare_answers", "evaluate_models", "evaluator_info", "load_policy_with_adapters", "win_outcomes"]

# The referees an answer can be scored by, in the order the report shows them.
EVALUATORS = ("proxy_rm", "gold_rm", "rules")

# The phases ``evaluate_models`` reports to its ``progress(phase, done, total)`` callback, in order, with their
# units: decoded token steps (every batch decodes up to max_new_tokens), log-ratio batches, scoring batches.
PHASES = ("generating answers", "KL to base", "scoring")
# Share of the whole evaluation's wall time per step, loading included (the progress bar's fractions), from the
# classroom preset on the 2-core CPU with 4 answers per prompt (benchmarks/eval_time.py): 91 s, of which
# generating 50 s, the KL's base forward 21 s, scoring by both reward models in bf16 18 s, loading 2 s.
PROGRESS_SHARE = {"loading models": 0.02, PHASES[0]: 0.56, PHASES[1]: 0.22, PHASES[2]: 0.2}


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
    batch_size: int = 128  # rows (model x sample x prompt) per generate call
    logprob_batch_size: int = 16  # rows per log-ratio forward: its (B, T, V) fp32 logits are 6.5 MB per row


def adapter_name(model_name: str) -> str:
    """The PEFT adapter name of an evaluated model (a module name may not hold a dot: ``"dpo(beta=0.05)"`` becomes
    ``"dpo(beta=0_05)"``)."""
    return model_name.replace(".", "_")


def load_policy_with_adapters(base_model, adapters: dict[str, str | Path]):
    """Wrap ``base_model`` in one ``PeftModel`` holding every adapter under its name (no weight copies).

    Raises:
        ValueError: no adapter given.
    """
    from peft import PeftModel

    if not adapters:
        raise ValueError("No trained adapter to evaluate")
    names = list(adapters)
    model = PeftModel.from_pretrained(base_model, str(adapters[names[0]]), adapter_name=adapter_name(names[0]))
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=adapter_name(name))
    return model.eval()


def bootstrap_win_rate(model_scores, base_scores, same_answer=None, tol: float = TIE_TOLERANCE,
                       n_resamples: int = 2000, seed: int = 0) -> dict:
    """Win rate of a model over base, ties counting 1/2 (``win_outcomes``: an identical answer, or reward scores
    within ``tol``), with a percentile bootstrap 95% interval over prompts (Efron & Tibshirani 1993, Ch. 13).

    ``alignment.stats.paired_bootstrap_win_rate`` with its defaults: shapes ``(n_prompts,)`` (one sample per prompt)
    or ``(n_prompts, n_samples)`` (prompts resampled with all their samples).

    Returns:
        ``{"win_rate", "ci_low", "ci_high", "n", "wins", "ties", "losses", "tie_rule"}`` plus ``n_prompts``,
        ``n_samples``, ``n_excluded``, ``half_width``, ``level``.
    """
    return paired_bootstrap_win_rate(model_scores, base_scores, same_answer, tol, n_resamples, seed)


def _distribution(values: list[float]) -> dict:
    q = np.percentile(values, [0, 25, 50, 75, 100]).tolist() if values else [0.0] * 5
    return {"mean": float(np.mean(values)) if values else 0.0, "std": float(np.std(values)) if values else 0.0,
            "min": q[0], "p25": q[1], "median": q[2], "p75": q[3], "max": q[4]}


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _generate_reporting(policy, tokenizer, rows, adapters, keys, decoding: DecodingConfig, progress):
    """``generate_shared_noise`` one batch of ``decoding.batch_size`` rows at a time (the same batches, hence the
    same answers, as one call), reporting ``progress("generating answers", token steps done, total)`` after every
    decoded token (a batch whose rows all end early jumps to its full ``max_new_tokens``)."""
    steps, out = decoding.max_new_tokens, []
    batches = _batches(len(rows), decoding.batch_size)
    total = len(batches) * steps
    for b, idx in enumerate(batches):
        def on_step(step: int, _steps: int, _done: int = b * steps) -> None:
            progress(PHASES[0], _done + step, total)

        out += generate_shared_noise(policy, tokenizer, rows[idx.start:idx.stop],
                                     adapters[idx.start:idx.stop] if adapters is not None else None,
                                     keys[idx.start:idx.stop], decoding.max_new_tokens, decoding.temperature,
                                     decoding.do_sample, decoding.seed, decoding.batch_size, on_step=on_step)
    return out


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def _as_floats(scores) -> list[float]:
    return scores.tolist() if hasattr(scores, "tolist") else [float(x) for x in scores]


def _by_prompt(rows: list, size: int) -> list[list[int]]:
    """Row indices sorted by prompt (stable) and cut into batches of ``size``: the rows of one prompt share a batch,
    where the prompt is encoded once (``PromptCache``)."""
    first: dict[str, int] = {}
    return grouped_batches([first.setdefault(str(row), len(first)) for row in rows], int, size)


def _score_all(scorers: list, rows: list, texts: list[str], progress) -> list[list]:
    """Each scorer's scores of every row (None for a missing scorer), one scorer batch of rows of the same prompts
    per ``score`` call, reporting ``progress("scoring", batches done, batches of all scorers)``."""
    plans = [_by_prompt(rows, getattr(sc, "batch_size", 16)) if sc is not None else [] for sc in scorers]
    total, done, out = sum(len(p) for p in plans), 0, []
    for sc, plan in zip(scorers, plans):
        values = [None] * len(rows)
        for idx in plan:  # the scorer's own batches, one per call
            for r, v in zip(idx, _as_floats(sc.score([rows[r] for r in idx], [texts[r] for r in idx]))):
                values[r] = v
            done += 1
            progress(PHASES[2], done, total)
        out.append(values)
    return out


def _log_ratios(policy, tokenizer, rows: list, adapters: list[str], gens: list, n: int, decoding: DecodingConfig,
                progress) -> list[float]:
    """KL estimate per row: log pi(y|x) - log pi_base(y|x) of its answer (0 for base rows), in nats.

    log pi comes from sampling (``Generation.logps``). log pi_base of an answer that base itself gave to the same
    prompt is base's recorded log-prob (no forward); the others run one reference forward per batch of
    ``decoding.logprob_batch_size`` rows of the same prompts (``sequence_log_ratio``), reporting
    ``progress("KL to base", batches done, batches)``. Row r answers prompt ``r % n``.
    """
    kls = [0.0] * len(rows)
    temp = decoding.temperature if decoding.do_sample else 1.0
    aligned = [r for r, a in enumerate(adapters) if a != "__base__"]
    recorded = all(gens[r].logps is not None for r in aligned)
    known = {(r % n, tuple(gens[r].token_ids)): gens[r].logps for r, a in enumerate(adapters)
             if a == "__base__" and gens[r].logps is not None} if recorded else {}
    todo = []
    for r in aligned:
        base_logps = known.get((r % n, tuple(gens[r].token_ids)))
        if base_logps is not None:
            kls[r] = sum(gens[r].logps) - sum(base_logps)
        else:
            todo.append(r)
    batches = _by_prompt([r % n for r in todo], decoding.logprob_batch_size)
    for b, idx in enumerate(batches):
        part = [todo[j] for j in idx]
        ratios = sequence_log_ratio(policy, tokenizer, [rows[r] for r in part], [gens[r].token_ids for r in part],
                                    temp, decoding.logprob_batch_size, adapter_names=[adapters[r] for r in part],
                                    policy_logps=[gens[r].logps for r in part] if recorded else None)
        for r, v in zip(part, ratios):
            kls[r] = v
        progress(PHASES[1], b + 1, len(batches))
    return kls


def _answer_all(policy, tokenizer, scorer, prompts: list, model_names: list[str], decoding: DecodingConfig,
                progress=None, samples: int = 1, gold_scorer=None, noise_per_prompt: bool = True):
    """Every model answers every prompt ``samples`` times in shared batches; returns
    ``{name: (gens, kls, rewards, gold_rewards)}``, each a list of ``samples * len(prompts)`` entries, entry
    ``s * len(prompts) + i`` being sample ``s`` of prompt ``i`` (rewards/gold None without that scorer).

    Sampling noise is keyed by (prompt, sample): every model's answer to sample ``s`` of prompt ``i`` uses the same
    random numbers (paired comparisons), different samples use different ones. With ``samples=1`` the rows,
    batches and keys are those of one answer per prompt.

    ``progress``: optional ``callback(phase, done, total)`` with ``phase`` one of ``PHASES``, called as each
    decoded token, log-ratio batch and scoring batch completes. One path with or without it: the work is split
    into the batches the generator, ``sequence_log_ratio`` and the scorer use anyway, so the numbers are the same.
    """
    progress = progress or _no_progress
    mixed = hasattr(policy, "disable_adapter")
    if not mixed and model_names != ["base"]:
        raise ValueError("Only 'base' can be answered by a model without adapters")
    n = len(prompts)
    # model-major: the samples of one (model, prompt) share a generate batch, which encodes that prompt once
    blocks = [(s, name) for name in model_names for s in range(samples)]
    rows = [p for _ in blocks for p in prompts]
    adapters = ["__base__" if name == "base" else adapter_name(name) for _, name in blocks for _ in prompts]
    # same (prompt, sample) -> same noise, for every model; without noise_per_prompt every prompt gets the noise a
    # prompt answered alone would get (batched Compare requests of different students)
    keys = [s * n + i if noise_per_prompt else s for s, _ in blocks for i in range(n)]
    gens = _generate_reporting(policy, tokenizer, rows, adapters if mixed else None, keys, decoding, progress)
    kls = _log_ratios(policy, tokenizer, rows, adapters, gens, n, decoding, progress)
    rewards, gold = _score_all([scorer, gold_scorer], rows, [g.text for g in gens], progress)
    out = {}
    for name in model_names:
        idx = [j * n + i for j, (_, m) in enumerate(blocks) if m == name for i in range(n)]
        out[name] = ([gens[r] for r in idx], [kls[r] for r in idx], [rewards[r] for r in idx], [gold[r] for r in idx])
    return out


def evaluator_info(model_names: list[str], gold: bool = False, rules_coverage: tuple[int, int] | None = None) -> dict:
    """The ``evaluators`` entry of an evaluation: per evaluator, the evaluated methods ``trained`` to maximise it
    and what it is. ``rules_coverage``: (prompts with a rule, prompts without) when the rules evaluator ran."""
    optimisers = [m for m in model_names if method_of(m) in ("ppo", "grpo")]
    info = {"proxy_rm": {
        "trained": optimisers,
        "description": "the reward model trained in this run (its reward run, runs/reward/<run-id>), the one PPO "
                       "and GRPO maximise during "
                       "training: its win rates for them are biased upward; DPO never saw it"}}
    if gold:
        info["gold_rm"] = {"trained": [], "description": "a second reward model, trained on the other half of the "
                                                         "training pairs with another seed, that no method was "
                                                         "trained on (Gao et al. 2023)"}
    if rules_coverage is not None:
        info["rules"] = {"trained": [], "scored_prompts": rules_coverage[0], "unscored_prompts": rules_coverage[1],
                         "description": "programmatic checks per category (alignment.rules: the correct fact, the "
                                        "word or item count, a refusal with an alternative, concrete steps, no "
                                        "filler); no method optimised them"}
    return info


def _select_evaluators(evaluators, available: list[str]) -> list[str]:
    if evaluators is None:
        return available
    wanted = list(evaluators)
    unknown = [e for e in wanted if e not in EVALUATORS]
    if unknown:
        raise ValueError(f"unknown evaluator(s) {unknown}: expected some of {list(EVALUATORS)}")
    missing = [e for e in wanted if e not in available]
    if missing:
        raise ValueError(f"evaluator(s) {missing} not available: gold_rm needs gold_scorer, rules needs evaluation "
                         "prompts with a rule")
    return [e for e in EVALUATORS if e in wanted]


def _matrix(values: list, n: int, samples: int) -> np.ndarray:
    """Entries ``s * n + i`` -> a float ``(n, samples)`` array (None -> NaN)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float).reshape(samples, n).T


def _means_by_category(values: list, categories: list[str]) -> dict[str, float]:
    cats: dict[str, list[float]] = {}
    for v, c in zip(values, categories):
        if v is not None:
            cats.setdefault(c, []).append(v)
    return {c: statistics.fmean(v) for c, v in sorted(cats.items())}


def evaluate_models(policy, tokenizer, scorer: RewardScorer, eval_prompts: list[dict], model_names: list[str],
                    decoding: DecodingConfig | None = None, progress=None, *, samples_per_prompt: int = 1,
                    gold_scorer=None, evaluators=None) -> dict:
    """Generate, score and compare.

    Every model answers every prompt in the same batches (PEFT mixed-adapter batches), with shared sampling
    noise per (prompt, sample) (``GumbelNoiseSampler``): the only difference between two models' answers is the
    weights. Each answer is scored by every evaluator: ``scorer`` (``proxy_rm``), ``gold_scorer`` (``gold_rm``) and
    the prompts' rules (``rules``, ``alignment.rules.score_answer``).

    Args:
        policy: ``PeftModel`` holding an adapter per aligned model (``load_policy_with_adapters``).
        scorer: the reward model trained in this run (``proxy_rm``): ``.score(prompts, texts)`` -> scores.
        eval_prompts: ``[{"category", "prompt", "rule"?}]``; the rules evaluator runs when at least one prompt has a
            rule (``alignment.rules.rule_for``); prompts without one are excluded from it and counted.
        model_names: e.g. ``["base", "dpo", "ppo", "grpo"]``; ``"base"`` means adapters disabled.
        progress: optional ``callback(phase, done, total)``: ``phase`` is one of ``PHASES`` ("generating answers":
            decoded token steps of all batches; "KL to base": log-ratio batches; "scoring": reward-model batches of
            both reward models), ``done`` of ``total`` units finished. The answers and numbers do not depend on it.
        samples_per_prompt: answers per prompt and model (generation, KL and scoring cost scale with it).
        gold_scorer: optional second reward model with the same ``.score(prompts, texts)``, evaluated as
            ``gold_rm``.
        evaluators: optional names among ``EVALUATORS`` to compute win rates for (default: every available one).

    Returns:
        ``{"decoding", "samples_per_prompt", "evaluators": evaluator_info(...) (with each reward model's scoring
        ``precision``), "models": {name: {"summary",
        "samples"}}}``. ``samples``: one record per (sample, prompt), sample-major. ``summary``: mean reward, KL with
        ``kl_ci_low``/``kl_ci_high`` (nats/answer), length, EOS rate, ``mean_score`` and ``per_category_mean_score``
        per evaluator; for aligned models ``win_rate_vs_base`` and ``lc_win_rate_vs_base``, each
        ``{evaluator: alignment.stats result}``.

    Raises:
        ValueError: ``samples_per_prompt`` < 1, or an unknown or unavailable evaluator requested.
    """
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be at least 1, got {samples_per_prompt}")
    decoding = decoding or DecodingConfig()
    n, k = len(eval_prompts), samples_per_prompt
    has_rule = [rule_for(p) is not None for p in eval_prompts]
    available = ["proxy_rm", *(["gold_rm"] if gold_scorer is not None else []), *(["rules"] if any(has_rule) else [])]
    chosen = _select_evaluators(evaluators, available)
    answered = _answer_all(policy, tokenizer, scorer, [p["prompt"] for p in eval_prompts], model_names, decoding,
                           progress, k, gold_scorer if "gold_rm" in chosen else None)
    results, scores = {}, {}
    for name, (gens, kls, rewards, gold) in answered.items():
        samples = []
        for r, (g, kl, rw, gd) in enumerate(zip(gens, kls, rewards, gold)):
            s, i = divmod(r, n)
            p = eval_prompts[i]
            rec = {"prompt": p["prompt"], "category": p["category"], "sample": s, "response": g.text, "reward": rw,
                   "length_tokens": g.length, "ended_with_eos": g.ended_with_eos, "kl_to_base": kl}
            if "gold_rm" in chosen:
                rec["gold_reward"] = gd
            if "rules" in chosen:
                rec["rule_score"] = score_answer(p, g.text)
            samples.append(rec)
        results[name] = {"samples": samples}
        scores[name] = {"proxy_rm": rewards, "gold_rm": gold, "rules": [x.get("rule_score") for x in samples]}
    for name, res in results.items():
        res["summary"] = _summary(name, res["samples"], scores, answered, chosen, n, k, decoding.seed)
    torch.manual_seed(decoding.seed)
    info = evaluator_info(model_names, "gold_rm" in chosen,
                          (sum(has_rule), n - sum(has_rule)) if "rules" in chosen else None)
    for key, sc in (("proxy_rm", scorer), ("gold_rm", gold_scorer)):
        if key in info:  # RewardScorer.bf16: the precision it was trained in
            info[key]["precision"] = "bf16 autocast" if getattr(sc, "bf16", False) else "fp32"
    return {"decoding": asdict(decoding), "samples_per_prompt": k, "evaluators": info, "models": results}


def _summary(name: str, samples: list[dict], scores: dict, answered: dict, chosen: list[str], n: int, k: int,
             seed: int) -> dict:
    """One model's summary (``evaluate_models``); win rates against ``"base"`` when it was evaluated."""
    rewards = [s["reward"] for s in samples]
    categories = [s["category"] for s in samples]
    kl = kl_interval(_matrix([s["kl_to_base"] for s in samples], n, k), seed=seed)
    summary = {
        "mean_reward": statistics.fmean(rewards),
        "reward_distribution": _distribution(rewards),
        "mean_length_tokens": statistics.fmean(s["length_tokens"] for s in samples),
        "eos_rate": statistics.fmean(float(s["ended_with_eos"]) for s in samples),
        "kl_to_base": statistics.fmean(s["kl_to_base"] for s in samples),
        "kl_ci_low": kl["ci_low"], "kl_ci_high": kl["ci_high"],
        "per_category_mean_reward": _means_by_category(rewards, categories),
        "mean_score": {e: statistics.fmean(v) if (v := [x for x in scores[name][e] if x is not None]) else None
                       for e in chosen},
        "per_category_mean_score": {e: _means_by_category(scores[name][e], categories) for e in chosen},
        "n_prompts": n, "samples_per_prompt": k, "n_answers": n * k,
    }
    if "base" in answered and name != "base":
        same = _matrix([list(g.token_ids) == list(b.token_ids) for g, b in zip(answered[name][0], answered["base"][0])],
                       n, k).astype(bool)
        length_diff = (_matrix([s["length_tokens"] for s in samples], n, k)
                       - _matrix([g.length for g in answered["base"][0]], n, k))
        summary["win_rate_vs_base"], summary["lc_win_rate_vs_base"] = {}, {}
        for e in chosen:
            mine, base = _matrix(scores[name][e], n, k), _matrix(scores["base"][e], n, k)
            summary["win_rate_vs_base"][e] = paired_bootstrap_win_rate(
                mine, base, same, seed=seed, score_name="rule" if e == "rules" else "reward")
            outcomes = win_outcomes(mine, base, same)
            summary["lc_win_rate_vs_base"][e] = length_controlled_win_rate(outcomes, length_diff, seed=seed)
    return summary


@torch.no_grad()
def compare_answers(policy, tokenizer, scorer: RewardScorer | None, prompt: str, model_names: list[str],
                    decoding: DecodingConfig | None = None, gold_scorer: RewardScorer | None = None,
                    prompt_row: dict | None = None) -> dict[str, dict]:
    """One prompt, every model, identical decoding and shared sampling noise: the Compare tab's side-by-side view,
    each answer scored by the evaluators that need no request to a paid API.

    Args:
        policy: a ``PeftModel`` with one adapter per aligned model, or a plain model when only ``"base"`` is asked.
        scorer: the (proxy) reward model, or None (``reward`` is then None).
        gold_scorer: the gold reward model, or None (``gold_reward`` is then None).
        prompt_row: the prompt's evaluation row for its rule (``alignment.rules.score_answer``); default
            ``{"prompt": prompt}``, whose built-in rule ``rule_for`` finds by the question.

    Returns:
        ``{name: {"response", "reward", "gold_reward", "rule_score", "length_tokens", "ended_with_eos",
        "kl_to_base"}}``; ``rule_score`` is 1.0, 0.5 or 0.0, None when the prompt has no rule; ``kl_to_base`` is
        the single-sample log-ratio log pi(y|x) - log pi_base(y|x) of that answer (nats), 0 for base.
    """
    return compare_answers_batch(policy, tokenizer, scorer, [prompt], model_names, decoding, gold_scorer,
                                 [prompt_row] if prompt_row else None)[0]


@torch.no_grad()
def compare_answers_batch(policy, tokenizer, scorer: RewardScorer | None, prompts: list, model_names: list[str],
                          decoding: DecodingConfig | None = None, gold_scorer: RewardScorer | None = None,
                          prompt_rows: list[dict] | None = None) -> list[dict[str, dict]]:
    """``compare_answers`` for several prompts in one generate call (several students' Compare requests with the
    same settings, ``alignment.serving.batcher``). Every prompt gets the sampling noise it would get alone, so a
    student's answers do not depend on who else asked at the same moment (up to float rounding of a padded batch).
    ``prompt_rows``: one evaluation row per prompt for the rules (default ``{"prompt": p}``).

    Returns:
        One ``compare_answers`` dict per prompt, in order.
    """
    answered = _answer_all(policy, tokenizer, scorer, list(prompts), model_names, decoding or DecodingConfig(),
                           gold_scorer=gold_scorer, noise_per_prompt=False)
    rows = prompt_rows or [{"prompt": p} for p in prompts]
    return [{name: {"response": g[i].text, "reward": r[i], "gold_reward": gold[i],
                    "rule_score": score_answer(rows[i], g[i].text), "length_tokens": g[i].length,
                    "ended_with_eos": g[i].ended_with_eos, "kl_to_base": k[i]}
             for name, (g, k, r, gold) in answered.items()} for i in range(len(prompts))]
