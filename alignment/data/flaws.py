"""Planted reward-model flaws for the reward-hacking exercise (``RewardModelConfig.reward_flaw``).

A reward model learns whatever separates chosen from rejected in its data, including biases of the annotators.
Singhal et al. 2023 ("A Long Way to Go: Investigating Length Correlations in RLHF") found that much of what reward
models trained on real preference data reward is length. The exercise plants that bias on purpose: the proxy
reward model (the one PPO and GRPO optimise) learns from relabelled pairs, the gold reward model and the rules
stay clean, and the charts of the run show the proxy score climbing while the gold score and the rules fall
(Gao et al. 2023, "Scaling Laws for Reward Model Overoptimization").

Flaws:

- ``"length"``: in every pair the longer answer (in characters) is labelled chosen; pairs of equal length are
  left as they are. On the built-in data this relabels the verbosity pairs (the padded answer now wins) and every
  other pair whose rejected answer is the longer one.
"""

from __future__ import annotations

FLAWS = ("none", "length")


def plant_flaw(rows: list[dict], flaw: str) -> tuple[list[dict], int]:
    """``rows`` with ``flaw`` planted, and how many pairs it relabelled. The input rows are not modified.

    Args:
        rows: canonical preference rows (``{"prompt", "chosen", "rejected", ...}``).
        flaw: one of ``FLAWS``.

    Raises:
        ValueError: an unknown flaw (the message lists the known ones).
    """
    if flaw not in FLAWS:
        raise ValueError(f"Unknown reward flaw {flaw!r}; choose one of {', '.join(FLAWS)}")
    if flaw == "none":
        return list(rows), 0
    out, changed = [], 0
    for row in rows:
        if len(row["rejected"]) > len(row["chosen"]):
            row = {**row, "chosen": row["rejected"], "rejected": row["chosen"], "flaw": flaw}
            changed += 1
        out.append(row)
    return out, changed
