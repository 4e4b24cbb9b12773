"""Nothing a run does changes what other students share: the tokenizer and the class's length budget."""

import json

import pytest

from alignment.config import make_config
from alignment.data import fit_to_length, split_pairs
from alignment.trainers import train_dpo, train_grpo, train_reward_model
from alignment.trainers.common import RunContext

FAST = dict(max_steps=2, max_completion_length=12, max_prompt_length=64)


@pytest.fixture(scope="module")
def rows(builtin_rows, tokenizer):
    return split_pairs(fit_to_length(builtin_rows[:40], tokenizer, 64, 12), seed=0)


def _watch(tokenizer, seen):
    """A progress callback that records the shared tokenizer's sides at every logged step (mid-training)."""
    def on_progress(step, total, metrics):
        seen.append((tokenizer.padding_side, tokenizer.truncation_side))
    return on_progress


def test_trainers_never_change_the_shared_tokenizer(tmp_path, tiny_source, tokenizer, rows):
    """App threads generate with the manager's tokenizer while a training runs: a trainer that set it to right
    padding (TRL's need) made their prompts right-padded."""
    train, heldout = rows
    before = (tokenizer.padding_side, tokenizer.truncation_side)
    seen: list = []
    scorer, _ = train_reward_model(make_config("reward", **FAST), tiny_source, tokenizer, train, heldout,
                                   RunContext(tmp_path / "rm", "reward", 2, on_progress=_watch(tokenizer, seen)))
    train_dpo(make_config("dpo", **FAST), tiny_source, tokenizer, train,
              RunContext(tmp_path / "dpo", "dpo", 2, on_progress=_watch(tokenizer, seen)))
    train_grpo(make_config("grpo", **FAST, batch_size=1), tiny_source, tokenizer, train, scorer,
               RunContext(tmp_path / "grpo", "grpo", 2, on_progress=_watch(tokenizer, seen)))
    scorer.score([r["prompt"] for r in train[:2]], [r["chosen"] for r in train[:2]])
    assert len(seen) == 6 and set(seen) == {before}
    assert (tokenizer.padding_side, tokenizer.truncation_side) == before


def test_a_short_run_does_not_change_the_class_length_budget(tmp_path):
    from alignment.pipeline import trained_config, report_setup
    from class7_1 import AlignmentComparisonManager

    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path, preset="quick")
    budget = manager.lengths.max_completion_length
    result = manager.train_method("dpo", max_steps=1, max_completion_length=8)  # a Train-tab run with its own budget
    assert manager.lengths.max_completion_length == budget
    assert manager.config_for("dpo").max_completion_length == budget
    assert trained_config(result["run_dir"])["max_completion_length"] == 8  # the report shows what the run used
    again = AlignmentComparisonManager("tiny", output_dir=tmp_path, preset="quick")  # a later session
    runs = {m: {"run_dir": str(r.path)} for m, r in again.class_runs().items()}
    setup = report_setup(again.session, None, "builtin", runs)
    assert setup["configs"]["dpo"]["max_completion_length"] == 8
    assert setup["configs"]["ppo"]["max_completion_length"] == budget  # not trained: the preset's
    saved = json.loads((again.run_dir("dpo") / "config.json").read_text())["config"]
    assert saved["max_completion_length"] == 8
