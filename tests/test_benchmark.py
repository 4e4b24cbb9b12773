"""The benchmark's pieces on the tiny model: step timing with token counts, and the markdown report."""

import importlib.util
from pathlib import Path

import pytest

from alignment.data import fit_to_length

spec = importlib.util.spec_from_file_location("bench", Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.parametrize("method", ["dpo", "ppo"])
def test_time_method_counts_tokens_and_flops(method, tiny_source, tokenizer, builtin_rows):
    from alignment.generation import RewardScorer
    from alignment.models import load_sequence_classifier

    rows = fit_to_length(builtin_rows[:40], tokenizer, 64, 12)
    scorer = RewardScorer(load_sequence_classifier(tiny_source, tokenizer), tokenizer)
    for baseline in (False, True):
        r = bench.time_method(method, baseline, 3, tiny_source, tokenizer, rows, scorer, n_params=1000)
        assert r["s_per_step"] > 0 and r["tokens_per_step"] > 0
        assert len(r["steps_s"]) == 2 and min(r["steps_s"]) <= r["s_per_step"] <= max(r["steps_s"])  # the median
        factor = 6 if method == "dpo" else 16  # PPO: generation, old, reference, reward model + 2 epochs x 4N
        assert r["flop_per_s"] == pytest.approx(factor * 1000 * r["tokens_per_s"])
        assert r["bf16"] is (not baseline)
    if method == "ppo":
        assert set(r["phases_s"]) == {"time/generation_s", "time/logprobs_s", "time/scoring_s", "time/update_s"}


def test_markdown_table():
    step = {"s_per_step": 2.0, "tokens_per_s": 100.0, "flop_per_s": 4e10}
    r = {"created": "now", "steps": 4, "machine": {"cpu": "x", "cores": 2, "threads": 2, "torch": "2"},
         "peak_tflops": {"fp32": 0.2, "bf16": 0.4},
         "methods": {"dpo": {"project": step, "baseline": {**step, "s_per_step": 3.0}}}}
    md = bench.markdown(r)
    assert "| dpo | 2.00 | 3.00 | 1.50x | 100 | 40 | 10% | 20% |" in md
