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


def test_targets_are_checked_against_the_issue_bounds():
    def step(s):
        return {"s_per_step": s, "tokens_per_s": 1.0, "flop_per_s": 1.0}

    r = {"methods": {"dpo": {"project": step(2.0), "baseline": step(5.0), "speedup": 2.5},
                     "grpo": {"project": step(4.0), "baseline": step(7.0), "speedup": 1.75},
                     "ppo": {"project": step(6.2), "baseline": step(12.0), "speedup": 1.94}},
         "eval_generation": {"speedup": 9.0}, "model_load": {"warm_load_s": 0.5},
         "classroom_preset": {"returncode": 0, "wall_s": 330.0, "peak_rss_gb": 4.0}}
    got = {t["target"]: (t["measured"], t["met"]) for t in bench.check_targets(r)}
    assert got["classroom preset end to end, minutes"] == (5.5, False)
    assert got["DPO speed-up over plain TRL"] == (2.5, True)
    assert got["GRPO speed-up over plain TRL"] == (1.75, False)
    assert got["PPO / GRPO step time"] == (pytest.approx(1.55), False)
    assert got["evaluation generation speed-up over one at a time"] == (9.0, True)
    assert got["warm model load, seconds"] == (0.5, True)
    assert got["peak resident memory of the preset, GB"] == (4.0, True)
    r["classroom_preset"]["returncode"] = 1  # a failed preset run is not a measurement
    assert bench.check_targets(r)[0]["met"] is None
    md = bench.markdown({"methods": r["methods"], "created": "now", "steps": 4, "peak_tflops": {"fp32": 0.2, "bf16": 0.4},
                         "machine": {"cpu": "x", "cores": 2, "threads": 2, "torch": "2", "cpu_features": ["avx512_bf16"]}})
    assert "| DPO speed-up over plain TRL | >= 2 | 2.50 | yes |" in md
    assert "| GRPO speed-up over plain TRL | >= 2 | 1.75 | **no** |" in md
    assert "| classroom preset end to end, minutes | <= 5 | not run |  |" in md and "avx512_bf16" in md


def test_rm_learning_curve_smoke(tmp_path, tiny_source):
    """benchmarks/rm_learning_curve.py on the tiny model, 2 steps per setting: the JSON has a curve per setting
    (held-out and training-pair accuracy, steps and training seconds) and the HTML figure is written."""
    import json

    spec = importlib.util.spec_from_file_location(
        "rm_learning_curve", Path(__file__).resolve().parents[1] / "benchmarks" / "rm_learning_curve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--model", "tiny", "--dataset", "builtin", "--settings", "classroom", "256 tokens",
                     "--max-steps", "2", "--eval-every", "1", "--eval-pairs", "8", "--train-eval-pairs", "6",
                     "--out", str(tmp_path), "--png", "none"]) == 0
    r = json.loads((tmp_path / "rm_learning_curve.json").read_text())
    assert [s["name"] for s in r["settings"]] == ["classroom", "256 tokens"]
    assert r["settings"][1]["token_budget"] == 256 and r["settings"][0]["token_budget"] == 96
    for s in r["settings"]:
        assert s["steps"] == 2 and [p["step"] for p in s["curve"]] == [1, 2]
        assert s["heldout_pairs"] == 8 and s["train_sample_pairs"] == 6
        for p in s["curve"]:
            assert 0 <= p["heldout_accuracy"] <= 1 and 0 <= p["train_accuracy"] <= 1 and p["train_s"] >= 0
        assert s["curve"][1]["train_s"] >= s["curve"][0]["train_s"] and s["tokens"] > 0
        assert s["heldout_accuracy"] == s["curve"][-1]["heldout_accuracy"]
    assert "avx512_bf16" in r["machine"] and isinstance(r["target_met"], bool)
    assert (tmp_path / "rm_learning_curve.html").stat().st_size > 10_000
    assert mod.main(["--replot", str(tmp_path / "rm_learning_curve.json"), "--out", str(tmp_path / "again"),
                     "--png", "none"]) == 0  # the figure alone, from the JSON
    assert (tmp_path / "again" / "rm_learning_curve.html").is_file()
