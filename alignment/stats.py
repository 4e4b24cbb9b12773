"""Honest statistics for comparing an aligned model with base: paired win rates, length-controlled win rates and
KL, each with a bootstrap interval that resamples *prompts* (all answers to a prompt together).

Why prompts: with several sampled answers per prompt, the answers to one prompt are not independent (an easy
prompt is won by every sample), so treating the n_prompts x n_samples outcomes as independent draws would make
the interval too narrow. Resampling the top level of the hierarchy (the prompt) and keeping its samples together
is the cluster bootstrap (Davison & Hinkley 1997, *Bootstrap Methods and their Application*, Sec. 3.8; Miller
2024, "Adding Error Bars to Evals", arXiv:2411.00640, clustered standard errors). Intervals are percentile
intervals (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, Ch. 13).

Pure numpy; every function takes plain arrays. Shapes: ``(n_prompts, n_samples)``, or ``(n_prompts,)`` for one
sample per prompt.
"""

from __future__ import annotations

import numpy as np

# Two scores within this distance are a tie (the same text scored in differently padded batches differs by ~1e-7).
TIE_TOLERANCE = 1e-4
# L2 penalty of the length-controlled GLM (on the summed log-likelihood): keeps the fit finite when the outcomes
# are separable (every answer won), and is too small to move a fit on 30 prompts noticeably otherwise.
LC_L2 = 1e-2


def as_prompt_matrix(values, name: str = "values") -> np.ndarray:
    """``values`` as a float ``(n_prompts, n_samples)`` array; a 1-D input is one sample per prompt.

    Raises:
        ValueError: more than 2 dimensions, or no prompt.
    """
    a = np.asarray(values, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: expected shape (n_prompts,) or (n_prompts, n_samples), got {np.shape(values)}")
    return a


def win_outcomes(model_scores, base_scores, same_answer=None, tol: float = TIE_TOLERANCE) -> np.ndarray:
    """Per answer pair: 1 (the model's answer scores higher than base's), 0.5 (a tie), 0 (lower).

    A tie is the same answer as base (``same_answer``: identical token sequences) or a score difference of at most
    ``tol``; never float noise. A NaN score (an answer the evaluator could not score) gives NaN.

    Shapes: any equal shapes (``(n,)`` or ``(n_prompts, n_samples)``) -> the same shape.
    """
    a, b = np.asarray(model_scores, dtype=float), np.asarray(base_scores, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"model scores {a.shape} and base scores {b.shape} differ in shape")
    tie = np.abs(a - b) <= tol
    if same_answer is not None:
        tie |= np.asarray(same_answer, dtype=bool).reshape(a.shape)
    out = np.where(tie, 0.5, (a > b).astype(float))
    return np.where(np.isnan(a) | np.isnan(b), np.nan, out)


def _resample_index(n_prompts: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n_prompts)`` prompt indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n_prompts, size=(n_resamples, n_prompts))


def _interval(boots: np.ndarray, level: float) -> tuple[float, float]:
    alpha = 100 * (1 - level) / 2
    return float(np.percentile(boots, alpha)), float(np.percentile(boots, 100 - alpha))


def _complete_prompts(*arrays: np.ndarray) -> np.ndarray:
    """Boolean ``(n_prompts,)``: prompts with no NaN in any of ``arrays`` (each ``(n_prompts, n_samples)``)."""
    return ~np.any([np.isnan(a).any(axis=1) for a in arrays], axis=0)


def paired_bootstrap_win_rate(model_scores, base_scores, same_answer=None, tol: float = TIE_TOLERANCE,
                              n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
                              score_name: str = "reward") -> dict:
    """Win rate of a model over base on paired answers, ties counting 1/2, with a prompt-level bootstrap interval.

    The answer to (prompt i, sample j) by the model is compared with base's answer to the same prompt drawn with
    the same sampling noise (``win_outcomes``). The win rate is the mean outcome over all pairs,
    W = (1 / (n m)) sum_i sum_j o_ij; its interval is the percentile interval of W over ``n_resamples`` resamples
    of the n prompts with replacement, each resampled prompt bringing all m of its samples (cluster bootstrap:
    Davison & Hinkley 1997, Sec. 3.8; Efron & Tibshirani 1993, Ch. 13).

    A prompt with a NaN score (e.g. no rule to check it) is excluded, and counted in ``n_excluded``.

    Args:
        model_scores, base_scores: shape ``(n_prompts, n_samples)``, or ``(n_prompts,)`` for one sample each.
        same_answer: optional bool array of the same shape: the two answers are identical token sequences (a tie).
        tol: score differences up to ``tol`` are ties (units of the score).
        score_name: what the scores are, for ``tie_rule`` ("reward", "rule").

    Returns:
        ``{"win_rate", "ci_low", "ci_high", "half_width", "n", "n_prompts", "n_samples", "n_excluded", "wins",
        "ties", "losses", "tie_rule", "level"}``: ``n`` = compared answer pairs (n_prompts x n_samples), counts over
        those pairs; rates in [0, 1]. With at least 2 prompts and 2 samples each, also ``"var_between_prompts"`` and
        ``"var_within_prompt"`` (``variance_components`` of the outcomes), from which ``projected_half_width``
        tells what more prompts or more samples would give.

    Raises:
        ValueError: shapes differ, or no prompt is left to compare.
    """
    a, b = as_prompt_matrix(model_scores, "model_scores"), as_prompt_matrix(base_scores, "base_scores")
    if a.shape != b.shape:
        raise ValueError(f"model scores {a.shape} and base scores {b.shape} differ in shape")
    same = None if same_answer is None else np.asarray(same_answer, dtype=bool).reshape(a.shape)
    keep = _complete_prompts(a, b)
    if not keep.any():
        raise ValueError("no prompt with scores for both models to compare")
    outcomes = win_outcomes(a[keep], b[keep], None if same is None else same[keep], tol)  # (n, m)
    per_prompt = outcomes.mean(axis=1)  # (n,): every prompt has m samples, so the mean of means is the mean
    boots = per_prompt[_resample_index(len(per_prompt), n_resamples, seed)].mean(axis=1)
    lo, hi = _interval(boots, level)
    return {"win_rate": float(outcomes.mean()), "ci_low": lo, "ci_high": hi, "half_width": (hi - lo) / 2,
            "n": int(outcomes.size), "n_prompts": int(outcomes.shape[0]), "n_samples": int(outcomes.shape[1]),
            "n_excluded": int((~keep).sum()), "wins": int((outcomes == 1).sum()), "ties": int((outcomes == 0.5).sum()),
            "losses": int((outcomes == 0).sum()), "level": level,
            "tie_rule": f"identical answer, or {score_name} scores within {tol:g}", **variance_components(outcomes)}


def variance_components(outcomes) -> dict:
    """Where the spread of paired outcomes comes from: between prompts (some prompts are won by every sample) and
    within a prompt (the samples of one prompt disagree).

    One-way random-effects model o_ij = mu + a_i + e_ij, its two variances estimated by the method of moments
    (Searle, Casella & McCulloch 1992, *Variance Components*, Sec. 3.5): within = the mean over prompts of the
    samples' variance (ddof 1); between = Var_i(prompt mean) (ddof 1) - within / m, floored at 0. The variance of
    the win rate over n prompts x m samples is then (between + within / m) / n.

    Shapes: ``outcomes (n_prompts, n_samples)`` (no NaN) -> ``{"var_between_prompts", "var_within_prompt"}``
    (outcome units squared), or ``{}`` with fewer than 2 prompts or 2 samples.
    """
    o = np.asarray(outcomes, dtype=float)
    if o.ndim != 2 or o.shape[0] < 2 or o.shape[1] < 2:
        return {}
    within = float(o.var(axis=1, ddof=1).mean())
    between = max(0.0, float(o.mean(axis=1).var(ddof=1)) - within / o.shape[1])
    return {"var_between_prompts": between, "var_within_prompt": within}


def projected_half_width(result: dict, n_prompts: int, n_samples: int) -> float | None:
    """The half-width a win rate's interval would have with ``n_prompts`` x ``n_samples`` answer pairs, projected
    from this one's (``paired_bootstrap_win_rate``'s result) by its variance components: the measured half-width
    times sqrt(V(n, m) / V(n0, m0)), V(n, m) = (between + within / m) / n. An estimate: it assumes new prompts and
    samples vary as these did. None without the components (fewer than 2 prompts or 2 samples).
    """
    if "var_within_prompt" not in result:
        return None
    between, within = result["var_between_prompts"], result["var_within_prompt"]
    now = (between + within / result["n_samples"]) / result["n_prompts"]
    if now <= 0:
        return 0.0
    return float(result["half_width"] * np.sqrt((between + within / n_samples) / n_prompts / now))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = LC_L2, iters: int = 50) -> np.ndarray:
    """Logistic regression with fractional targets by Newton's method (IRLS), batched over fits.

    Minimises sum_k [-y_k log p_k - (1 - y_k) log(1 - p_k)] + (l2 / 2) ||theta||^2 with p_k = sigmoid(x_k . theta)
    (McCullagh & Nelder 1989, *Generalized Linear Models*, 2nd ed., Ch. 2: iteratively reweighted least squares,
    which is Newton's method for the canonical logit link). Targets in [0, 1] (a tie is 0.5) give the
    quasi-binomial fit with the same estimating equations.

    Shapes: ``X (B, K, D)``, ``y (B, K)`` -> ``theta (B, D)``; ``X (K, D)``, ``y (K,)`` -> ``(D,)``.
    """
    single = X.ndim == 2
    X, y = (X[None], y[None]) if single else (X, y)
    theta = np.zeros((X.shape[0], X.shape[2]))
    ridge = l2 * np.eye(X.shape[2])
    for _ in range(iters):
        p = _sigmoid(np.einsum("bkd,bd->bk", X, theta))
        grad = np.einsum("bkd,bk->bd", X, p - y) + l2 * theta
        hess = np.einsum("bkd,bk,bke->bde", X, p * (1 - p), X) + ridge
        step = np.clip(np.linalg.solve(hess, grad[..., None])[..., 0], -5.0, 5.0)  # damped far from the optimum
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return theta[0] if single else theta


def length_controlled_win_rate(outcomes, length_diff, n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
                               l2: float = LC_L2) -> dict:
    """The win rate the model would have at equal answer length (length-controlled win rate).

    AlpacaEval 2's length control (Dubois, Galambosi, Liang & Hashimoto 2024, "Length-Controlled AlpacaEval: A
    Simple Way to Debias Automatic Evaluators", arXiv:2404.04475, Sec. 3): fit the GLM

        P(model wins | Delta) = sigmoid(theta + phi * tanh(Delta / sd(Delta)))

    to the outcomes (ties as 1/2: fractional targets), Delta = length(model answer) - length(base answer), then
    predict at Delta = 0: LC = sigmoid(theta). The paper's GLM also has an instruction-difficulty term fitted across
    many models; with one model against base it is absorbed into theta and omitted here. A win rate that is high
    only because the model writes longer answers (and the evaluator likes length) gets LC near 0.5; a win rate
    that does not depend on length keeps LC near the raw rate. Interval: percentile bootstrap over prompts (all
    samples of a prompt together), refitting the GLM per resample with sd(Delta) held at the full data's value.

    Args:
        outcomes: ``(n_prompts, n_samples)`` or ``(n_prompts,)``, values in {0, 0.5, 1} (``win_outcomes``); NaN
            marks an unscored pair (its prompt is excluded).
        length_diff: same shape, model minus base length (tokens; AlpacaEval uses characters).
        l2: ridge penalty on (theta, phi) (``fit_logistic``).

    Returns:
        ``{"lc_win_rate", "ci_low", "ci_high", "half_width", "raw_win_rate", "intercept", "length_coef",
        "length_scale", "mean_length_diff", "n", "n_prompts", "n_samples", "n_excluded", "level"}``
        (``length_scale`` = sd(Delta) in the length unit; ``length_coef`` = phi, >0 when longer answers win more).

    Raises:
        ValueError: shapes differ, or no prompt is left.
    """
    y, d = as_prompt_matrix(outcomes, "outcomes"), as_prompt_matrix(length_diff, "length_diff")
    if y.shape != d.shape:
        raise ValueError(f"outcomes {y.shape} and length_diff {d.shape} differ in shape")
    keep = _complete_prompts(y, d)
    if not keep.any():
        raise ValueError("no prompt with an outcome to fit")
    y, d = y[keep], d[keep]
    scale = float(d.std(ddof=1)) if d.size > 1 else 0.0
    scale = scale if scale > 0 else 1.0  # equal lengths everywhere: the length feature is 0, LC = raw (up to l2)
    X = np.stack([np.ones_like(d), np.tanh(d / scale)], axis=-1)  # (n, m, 2)
    n, m = y.shape
    theta = fit_logistic(X.reshape(n * m, 2), y.reshape(n * m), l2)
    idx = _resample_index(n, n_resamples, seed)  # (B, n)
    boot_theta = fit_logistic(X[idx].reshape(n_resamples, n * m, 2), y[idx].reshape(n_resamples, n * m), l2)
    lo, hi = _interval(_sigmoid(boot_theta[:, 0]), level)
    return {"lc_win_rate": float(_sigmoid(theta[0])), "ci_low": lo, "ci_high": hi, "half_width": (hi - lo) / 2,
            "raw_win_rate": float(y.mean()), "intercept": float(theta[0]), "length_coef": float(theta[1]),
            "length_scale": scale, "mean_length_diff": float(d.mean()), "n": int(y.size), "n_prompts": n,
            "n_samples": m, "n_excluded": int((~keep).sum()), "level": level}


def kl_interval(per_sample_kl, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean KL to base with a prompt-level percentile bootstrap interval.

    ``per_sample_kl[i, j]`` = log pi(y_ij | x_i) - log pi_base(y_ij | x_i) for the model's own sample y_ij (nats):
    its mean is an unbiased Monte-Carlo estimate of KL(pi || pi_base) averaged over prompts (Schulman 2020,
    "Approximating KL Divergence", estimator k1). Interval as in ``paired_bootstrap_win_rate``.

    Shapes: ``(n_prompts, n_samples)`` or ``(n_prompts,)``.

    Returns:
        ``{"mean", "ci_low", "ci_high", "half_width", "n_prompts", "n_samples", "level"}`` (nats per answer).
    """
    kl = as_prompt_matrix(per_sample_kl, "per_sample_kl")
    boots = kl.mean(axis=1)[_resample_index(kl.shape[0], n_resamples, seed)].mean(axis=1)
    lo, hi = _interval(boots, level)
    return {"mean": float(kl.mean()), "ci_low": lo, "ci_high": hi, "half_width": (hi - lo) / 2,
            "n_prompts": int(kl.shape[0]), "n_samples": int(kl.shape[1]), "level": level}
