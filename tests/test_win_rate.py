"""Win rates count ties honestly: an identical answer, or scores within the stated tolerance, is a tie. With several
samples per prompt the interval resamples prompts; the length-controlled win rate removes a win that is only
length; the KL interval resamples prompts too."""

import numpy as np
import pytest

from alignment.evaluation import TIE_TOLERANCE, bootstrap_win_rate, win_outcomes
from alignment.stats import (kl_interval, length_controlled_win_rate, paired_bootstrap_win_rate, projected_half_width,
                             variance_components)


def test_identical_answers_scored_with_float_noise_are_ties():
    # the run: all 30 DPO answers identical to base, scores 1e-7 apart after batching with other padding
    base = [0.1 * i for i in range(30)]
    model = [s + (1e-7 if i % 2 else -1e-7) for i, s in enumerate(base)]
    wr = bootstrap_win_rate(model, base, same_answer=[True] * 30)
    assert wr["win_rate"] == 0.5 and wr["ci_low"] == 0.5 and wr["ci_high"] == 0.5
    assert (wr["wins"], wr["ties"], wr["losses"], wr["n"]) == (0, 30, 0, 30)
    assert bootstrap_win_rate(model, base)["ties"] == 30  # float noise alone is below the tolerance too


def test_outcomes_by_hand():
    base = [0.0, 0.0, 0.0, 0.0, 0.0]
    model = [1.0, -1.0, TIE_TOLERANCE / 2, 0.3, 2 * TIE_TOLERANCE]
    same = [False, False, False, True, False]  # the 4th: same text, a tie whatever the scores say
    assert win_outcomes(model, base, same).tolist() == [1.0, 0.0, 0.5, 0.5, 1.0]
    wr = bootstrap_win_rate(model, base, same)
    assert wr["win_rate"] == pytest.approx(3 / 5) and (wr["wins"], wr["ties"], wr["losses"]) == (2, 2, 1)
    assert wr["ci_low"] <= wr["win_rate"] <= wr["ci_high"] and "identical answer" in wr["tie_rule"]


# ----------------------------------------------------------------------------- several samples per prompt


def test_bootstrap_resamples_prompts_not_samples():
    """8 samples of a prompt share its outcome: the interval is that of 10 prompts, not of 80 independent answers."""
    rng = np.random.default_rng(0)
    per_prompt = rng.integers(0, 2, 10).astype(float)  # each prompt: every sample won, or every sample lost
    model = np.repeat(per_prompt[:, None], 8, axis=1)
    base = np.full((10, 8), 0.5)
    clustered = paired_bootstrap_win_rate(model, base)
    one_each = paired_bootstrap_win_rate(per_prompt, np.full(10, 0.5))
    assert (clustered["ci_low"], clustered["ci_high"]) == (one_each["ci_low"], one_each["ci_high"])
    assert (clustered["n"], clustered["n_prompts"], clustered["n_samples"]) == (80, 10, 8)
    assert clustered["wins"] == 8 * per_prompt.sum() and clustered["win_rate"] == per_prompt.mean()
    as_if_independent = paired_bootstrap_win_rate(model.ravel(), base.ravel())
    assert as_if_independent["half_width"] < 0.6 * clustered["half_width"]  # what resampling answers would claim
    assert clustered["half_width"] == pytest.approx((clustered["ci_high"] - clustered["ci_low"]) / 2)


def test_variance_components_by_hand():
    # every sample of a prompt agrees: all the spread is between prompts (var of means [1, 0] = 0.5)
    assert variance_components([[1, 1], [0, 0]]) == {"var_between_prompts": 0.5, "var_within_prompt": 0.0}
    # the samples of each prompt split evenly: all of it within prompts (var of [1, 0] = 0.5), prompts alike
    assert variance_components([[1, 0], [1, 0]]) == {"var_between_prompts": 0.0, "var_within_prompt": 0.5}
    assert variance_components([[1, 0, 0.5]]) == {} and variance_components([[1], [0]]) == {}  # nothing to split


def test_projected_half_width_follows_the_components():
    within_only = {"half_width": 0.1, "n_prompts": 30, "n_samples": 4, "var_between_prompts": 0.0,
                   "var_within_prompt": 0.2}
    assert projected_half_width(within_only, 30, 8) == pytest.approx(0.1 / np.sqrt(2))  # answers help
    assert projected_half_width(within_only, 60, 4) == pytest.approx(0.1 / np.sqrt(2))  # as much as prompts
    between_only = {**within_only, "var_between_prompts": 0.05, "var_within_prompt": 0.0}
    assert projected_half_width(between_only, 30, 8) == pytest.approx(0.1)  # more answers: no help at all
    assert projected_half_width(between_only, 120, 4) == pytest.approx(0.05)
    assert projected_half_width({"half_width": 0.1, "n_prompts": 30, "n_samples": 1}, 30, 2) is None


def test_projection_predicts_the_bootstrap_of_a_bigger_evaluation():
    """Outcomes drawn from a known two-level model (prompt win probabilities spread around 0.6): the half-width
    projected from 40 prompts x 4 samples matches the bootstrap half-width measured on 40 x 16 and 160 x 4 within
    15%, and says rightly that here more prompts narrow it more than more samples."""
    rng = np.random.default_rng(7)

    def draw(n, m):
        p = np.clip(rng.normal(0.6, 0.25, n), 0, 1)  # (n,) each prompt's win probability
        return (rng.random((n, m)) < p[:, None]).astype(float)

    small = paired_bootstrap_win_rate(draw(40, 4), np.full((40, 4), 0.5))
    assert small["var_between_prompts"] > 0.03 and small["var_within_prompt"] > 0.1
    for n, m in ((40, 16), (160, 4)):
        measured = np.mean([paired_bootstrap_win_rate(draw(n, m), np.full((n, m), 0.5), seed=k)["half_width"]
                            for k in range(5)])
        assert projected_half_width(small, n, m) == pytest.approx(measured, rel=0.15)
    assert projected_half_width(small, 160, 4) < projected_half_width(small, 40, 16)


def test_one_sample_per_prompt_is_the_old_bootstrap():
    rng = np.random.default_rng(1)
    model, base = rng.normal(size=30), rng.normal(size=30)
    for n_resamples in (2000, 7):  # 7: few enough that another draw would move the percentiles
        old = win_outcomes(model, base)[np.random.default_rng(0).integers(0, 30, size=(n_resamples, 30))].mean(axis=1)
        wr = bootstrap_win_rate(model, base, n_resamples=n_resamples)
        assert wr == paired_bootstrap_win_rate(model[:, None], base[:, None], n_resamples=n_resamples)
        assert (wr["ci_low"], wr["ci_high"]) == (np.percentile(old, 2.5), np.percentile(old, 97.5))


def test_unscored_prompts_are_excluded_and_counted():
    model = np.array([[1.0, 1.0], [np.nan, np.nan], [0.0, 1.0]])
    base = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    wr = paired_bootstrap_win_rate(model, base, score_name="rule")
    assert wr["n_excluded"] == 1 and wr["n_prompts"] == 2 and (wr["wins"], wr["ties"], wr["losses"]) == (3, 1, 0)
    assert wr["win_rate"] == pytest.approx(3.5 / 4) and "rule scores" in wr["tie_rule"]
    with pytest.raises(ValueError):
        paired_bootstrap_win_rate([np.nan], [1.0])


# ----------------------------------------------------------------------------- length-controlled win rate


def _length_data(seed=0, n=400, m=2):
    rng = np.random.default_rng(seed)
    diff = rng.normal(10.0, 10.0, size=(n, m))  # the model is usually longer than base
    return rng, diff


def test_lc_win_rate_removes_a_win_that_is_only_length():
    rng, diff = _length_data()
    p_win = 1 / (1 + np.exp(-4 * np.tanh(diff / diff.std(ddof=1))))  # wins only through length: 50% at equal length
    outcomes = (rng.random(diff.shape) < p_win).astype(float)
    lc = length_controlled_win_rate(outcomes, diff)
    assert lc["raw_win_rate"] > 0.7  # the raw win rate is inflated by length
    assert abs(lc["lc_win_rate"] - 0.5) < 0.1 and lc["ci_low"] < 0.5 < lc["ci_high"]
    assert lc["length_coef"] > 2 and lc["n_prompts"] == 400 and lc["n_samples"] == 2


def test_lc_win_rate_keeps_a_win_that_is_not_length():
    rng, diff = _length_data(1)
    outcomes = (rng.random(diff.shape) < 0.8).astype(float)  # quality: wins 80% whatever the length
    lc = length_controlled_win_rate(outcomes, diff)
    assert lc["lc_win_rate"] == pytest.approx(lc["raw_win_rate"], abs=0.04) and lc["ci_low"] > 0.7
    assert abs(lc["length_coef"]) < 0.6


def test_lc_win_rate_ties_count_half_and_degenerate_inputs_stay_finite():
    ties = length_controlled_win_rate(np.full(30, 0.5), np.zeros(30))
    assert ties["lc_win_rate"] == pytest.approx(0.5) and ties["ci_low"] == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    all_won = length_controlled_win_rate(np.ones(30), rng.normal(0, 5, 30))  # separable: L2 keeps it finite
    assert 0.99 < all_won["lc_win_rate"] < 1 and np.isfinite(all_won["intercept"])
    half = length_controlled_win_rate(np.array([1.0, 0.0] * 15), rng.normal(0, 5, 30))
    assert 0.3 < half["lc_win_rate"] < 0.7


def test_kl_interval_resamples_prompts():
    kl = np.repeat(np.arange(10.0)[:, None], 4, axis=1)  # all samples of a prompt agree
    out = kl_interval(kl)
    assert out["mean"] == 4.5 and out["ci_low"] < 4.5 < out["ci_high"]
    assert (out["n_prompts"], out["n_samples"]) == (10, 4)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((kl_interval(np.arange(10.0))["ci_low"],
                                                             kl_interval(np.arange(10.0))["ci_high"]))
