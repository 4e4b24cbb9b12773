"""The real SmolLM2-135M-Instruct (embedded GGUF, converted once) on real HH-RLHF pairs, a few steps per method."""

import math

import pytest

from alignment.generation import generate
from alignment.models import load_causal_lm
from class7_1 import AlignmentComparisonManager

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def manager(tmp_path_factory, hh_path):
    out = tmp_path_factory.mktemp("real")
    m = AlignmentComparisonManager(dataset=str(hh_path), output_dir=out, max_pairs=48, max_eval_prompts=4,
                                   overrides={"all": {"max_steps": 2, "max_completion_length": 24}})
    m.load_preference_datasets()
    return m


def test_converted_model_answers_correctly(manager):
    model = load_causal_lm(manager.source, manager.tokenizer)
    answer = generate(model, manager.tokenizer, ["What is the capital of France?"], max_new_tokens=16, do_sample=False)[0]
    assert "Paris" in answer.text


def test_every_method_runs_on_real_data(manager):
    assert manager.datasets["load_report"]["format"] == "hh-rlhf"
    results = manager.demonstrate_alignment_methods(progress=False)
    for method in ("reward", "dpo", "ppo", "grpo"):
        assert results[method]["status"] == "completed", results[method].get("error")
        last = results[method]["history"][-1]
        assert all(math.isfinite(v) for v in last.values())
    evaluation = manager.evaluate_alignment_methods(progress=False)
    for name in ("dpo", "ppo", "grpo"):
        kl = evaluation["models"][name]["summary"]["kl_to_base"]
        assert math.isfinite(kl)
    report = manager.generate_report(results, evaluation)
    assert report["methods"]["reward"]["heldout"]["n_pairs"] >= 8
