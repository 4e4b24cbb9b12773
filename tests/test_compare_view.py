"""The Compare tab: its referees' scores, the 'what changed' panel and the arena leaderboard's interval."""

import pytest

from alignment.arena import ArenaVotes, bootstrap_intervals
from ui.compare_tab import NONE, diff_html, differences_html, score_note, score_rows


def _answer(text):
    return {"response": text, "reward": 0.0, "gold_reward": None, "rule_score": None,
            "length_tokens": len(text.split()), "ended_with_eos": True, "kl_to_base": 0.1}


def test_word_diff_marks_added_and_dropped_words_and_escapes_them():
    out = diff_html("Boil the egg for ten minutes.", "Boil the <b>egg</b> for seven minutes.")
    assert "<mark>&lt;b&gt;egg&lt;/b&gt;</mark>" in out and "<del>egg</del>" in out
    assert "<del>ten</del>" in out and "<mark>seven</mark>" in out and out.startswith("Boil the")
    assert "<b>" not in out  # model text is escaped


def test_identical_answers_are_called_identical_and_kl_explained():
    same = {"base": _answer("Blue."), "dpo": _answer("Blue."), "ppo": _answer("Blue.")}
    text = differences_html(same)
    assert "same answer" in text and "different probability" in text
    mixed = differences_html({"base": _answer("Blue."), "dpo": _answer("Red."), "ppo": _answer("Blue.")})
    assert "<b>DPO</b>" in mixed and "<mark>Red.</mark>" in mixed and "<b>PPO</b> vs base: <i>same answer" in mixed
    assert differences_html({"base": _answer("Blue.")}) == ""


def test_leaderboard_counts_votes_and_gives_an_interval_that_narrows_with_more_votes(tmp_path):
    board = ArenaVotes(tmp_path / "votes.json")
    assert board.leaderboard(["base", "dpo"])[0]["ci_low"] is None  # no votes, no interval
    for i in range(6):
        board.add("p", "dpo", "base", "A" if i % 3 else "B", f"s{i}")
    few = {r["model"]: r for r in board.leaderboard(["base", "dpo"])}
    assert few["dpo"]["votes"] == 6 and few["dpo"]["ci_low"] <= few["dpo"]["bradley_terry"] <= few["dpo"]["ci_high"]
    votes = board.votes() * 10
    many = bootstrap_intervals(votes, ["base", "dpo"])
    assert many["dpo"][1] - many["dpo"][0] < few["dpo"]["ci_high"] - few["dpo"]["ci_low"]


def test_compare_inputs_are_bounded(tmp_path):
    from class7_1 import AlignmentComparisonManager

    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path)
    with pytest.raises(ValueError, match="between 1 and 256"):
        manager.compare_models("hi", max_new_tokens=10**6)
    with pytest.raises(ValueError, match="too long"):
        manager.compare_models("x" * 5000)


def test_compare_requests_that_arrive_together_share_one_generate_call(tmp_path):
    """Three students pressing Generate at once: one batched call (issue 11), and each gets the answers they
    would have got alone (their prompt's sampling noise does not depend on the others)."""
    import threading

    from class7_1 import AlignmentComparisonManager

    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path, preset="quick")
    manager.train_method("dpo", max_steps=1)  # base and a class DPO answer
    prompts = ["Name a colour.", "What is 2 + 2? Answer with the number only.", "Say hello to the class."]
    alone = [manager.compare_models(p, 16, 0.7, 5) for p in prompts]
    assert manager.compare_batcher.sizes == [1, 1, 1]
    together = [None] * 3

    def ask(i):
        together[i] = manager.compare_models(prompts[i], 16, 0.7, 5)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert manager.compare_batcher.sizes[3:] == [3]
    for a, b in zip(alone, together):
        assert set(b) == {"base", "dpo"}
        assert [b[m]["response"] for m in b] == [a[m]["response"] for m in a]
    other_seed = manager.compare_models(prompts[0], 16, 0.7, 6)  # other settings: never in the same batch
    assert manager.compare_batcher.sizes[-1] == 1 and set(other_seed) == {"base", "dpo"}


def test_requests_that_arrive_while_the_model_is_busy_join_the_next_batch():
    """Under load the model thread is busy: a batch closes only when it starts running there, so requests that
    arrive meanwhile (here 1 s apart, far beyond the 0.1 s window) join it instead of queueing one by one."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from alignment.serving.batcher import MicroBatcher

    model = ThreadPoolExecutor(1)
    batcher = MicroBatcher(lambda key, items: [f"{key}:{x}" for x in items], window_s=0.1,
                           execute=lambda fn: model.submit(fn).result())
    model.submit(time.sleep, 2.5)  # an earlier generation holds the model thread
    results = {}

    def ask(i):
        results[i] = batcher.submit("k", i)

    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=ask, args=(i,)))
        threads[-1].start()
        time.sleep(0.6)
    for t in threads:
        t.join()
    assert results == {0: "k:0", 1: "k:1", 2: "k:2"}
    assert batcher.sizes == [3]  # one batch, although no two requests came within the window


def test_compare_scores_each_answer_by_the_proxy_and_gold_reward_models_and_the_rules(tmp_path):
    """The evaluators side by side: the proxy and the gold reward model of the class's reward run score every
    answer (gold None once the run has no gold model), and the prompt's rule scores it: an evaluation prompt's own
    rule from the prompt file, a built-in prompt's rule by its question, none for a prompt typed freely."""
    import json
    import shutil

    from alignment.pipeline import gold_adapter
    from alignment.rules import words
    from class7_1 import AlignmentComparisonManager

    own = "Say anything you like."  # a passing rule: any answer with words and no filler phrase
    prompts = tmp_path / "eval.json"
    prompts.write_text(json.dumps([{"category": "general", "prompt": own,
                                    "rule": {"kind": "concise", "max_words": 1000}}]))
    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path / "out", preset="quick",
                                         eval_prompts=str(prompts))
    no_model = manager.compare_models(own, 16, 0.7, 5)["base"]
    assert no_model["reward"] is None and no_model["gold_reward"] is None
    manager.train_method("reward", max_steps=1)  # trains the proxy and, beside it, the gold reward model
    gold = gold_adapter(manager.workspaces.latest(None, "reward").adapter)
    assert gold is not None

    passing = manager.compare_models(own, 16, 0.7, 5)["base"]
    failing = manager.compare_models("What is the capital of France?", 16, 0.7, 5)["base"]  # built-in: Paris
    free = manager.compare_models("Tell me about your day.", 16, 0.7, 5)["base"]
    assert words(passing["response"]) and passing["rule_score"] == 1.0
    assert "paris" not in failing["response"].lower() and failing["rule_score"] == 0.0
    assert free["rule_score"] is None
    for a in (passing, failing, free):  # two different reward models: two different scores
        assert isinstance(a["reward"], float) and isinstance(a["gold_reward"], float)
        assert a["gold_reward"] != pytest.approx(a["reward"], abs=1e-4)

    shutil.rmtree(gold.parent)  # a reward run without a gold model
    no_gold = manager.compare_models("Tell me about your day.", 16, 0.7, 5)
    assert no_gold["base"]["gold_reward"] is None and no_gold["base"]["reward"] == pytest.approx(free["reward"])
    row = score_rows(no_gold)[0]
    assert row[0] == "base" and row[2] == NONE and row[3] == NONE and row[1] != NONE
    note = score_note(no_gold)
    assert "no gold reward model" in note and "no rule" in note


def test_scores_table_shows_each_referee_and_a_dash_where_one_cannot_score():
    scored = {"base": {**_answer("Paris."), "reward": 0.5, "gold_reward": -0.25, "rule_score": 1.0},
              "ppo": {**_answer("Lyon."), "reward": 2.0, "gold_reward": -1.0, "rule_score": 0.0}}
    assert score_rows(scored) == [["base", "0.500", "-0.250", "1.000", 1, True, "0.100"],
                                  ["ppo", "2.000", "-1.000", "0.000", 1, True, "0.100"]]
    assert score_note(scored) == ""
    unscored = {"base": {**_answer("Hi."), "reward": None}}
    assert score_rows(unscored)[0][1:4] == [NONE, NONE, NONE]
    assert "no reward model yet" in score_note(unscored) and "no rule" in score_note(unscored)
