"""Win rates count ties honestly: an identical answer, or scores within the stated tolerance, is a tie."""

import pytest

from alignment.evaluation import TIE_TOLERANCE, bootstrap_win_rate, win_outcomes


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
