"""What the Report and Learn tabs tell a student, checked without a browser.

Report: the headline has each method's steps done / budget and status, the caveats name unequal or unfinished
budgets (and are absent when budgets are equal), the headline says which model scored. Evaluation: the progress
callback reports every phase per batch and does not change a single number. Learn: the code lines shown are
verbatim lines of alignment/losses.py and the worked numbers are the loss functions' own outputs.
"""

import json
import math

import pytest
import torch

from alignment import losses
from alignment.lessons import (LESSONS, Excerpt, check_excerpts, excerpt_is_verbatim, function_body,
                               lesson_excerpt_code, worked_example)
from alignment.report import (HEADLINE_COLUMNS, budget_caveats, headline_rows, recommendations, scorer_note,
                              write_reports)

LESSON = {lesson.key: lesson for lesson in LESSONS}


# ----------------------------------------------------------------------------- report


def _summary(mean_reward, kl=0.1, win=None):
    s = {"mean_reward": mean_reward, "reward_distribution": {"mean": mean_reward, "std": 0.1, "min": 0, "p25": 0,
                                                             "median": 0, "p75": 0, "max": 0},
         "mean_length_tokens": 20.0, "eos_rate": 0.5, "kl_to_base": kl, "per_category_mean_reward": {"a": mean_reward},
         "n_prompts": 2}
    if win is not None:
        s["win_rate_vs_base"] = {"win_rate": win, "ci_low": 0.2, "ci_high": 0.9}
    return s


def _evaluation(rewards: dict) -> dict:
    """Two prompts per model; ``rewards``: {model: [r1, r2]}; win rates as the evaluation computes them."""
    from alignment.evaluation import bootstrap_win_rate

    models = {}
    for name, rs in rewards.items():
        samples = [{"prompt": f"p{i}", "category": "a", "response": "x", "reward": r, "length_tokens": 20,
                    "ended_with_eos": True, "kl_to_base": 0.0 if name == "base" else 0.1} for i, r in enumerate(rs)]
        models[name] = {"samples": samples,
                        "summary": _summary(sum(rs) / 2, 0.0 if name == "base" else 0.1,
                                            None if name == "base" else 0.5)}
        if name != "base":
            models[name]["summary"]["win_rate_vs_base"] = bootstrap_win_rate(rs, rewards["base"])
    return {"decoding": {"seed": 0}, "models": models}


def _run(status, done, total, t=10.0):
    return {"status": status, "steps_done": done, "total_steps": total, "train_time_s": t, "history": []}


def test_headline_rows_show_steps_budget_and_status(tmp_path):
    methods = {"reward": _run("completed", 30, 30), "dpo": _run("completed", 30, 30),
               "ppo": _run("stopped", 10, 30), "grpo": _run("completed", 4, 4)}
    evaluation = _evaluation({"base": [0.0, 0.0], "dpo": [0.1, 0.1], "ppo": [0.5, 0.3], "grpo": [0.2, 0.2]})
    report = write_reports(tmp_path, {"model": {}}, methods, evaluation)
    rows = {r[0]: dict(zip(HEADLINE_COLUMNS, r)) for r in headline_rows(report)}
    assert rows["ppo"]["steps done / budget"] == "10/30" and rows["ppo"]["status"] == "stopped"
    assert rows["grpo"]["steps done / budget"] == "4/4" and rows["dpo"]["status"] == "completed"
    assert rows["base"]["steps done / budget"] == "-" and rows["base"]["status"] == "reference"
    assert rows["ppo"]["mean reward"] == "0.400" and rows["ppo"]["train s"] == "10"
    # the report file carries the same table and caveats the app shows
    saved = json.loads((tmp_path / "alignment_comparison_report.json").read_text())
    assert saved["headline_table"] == {"columns": HEADLINE_COLUMNS, "rows": headline_rows(report)}
    assert any("PPO did not complete" in c and "10/30" in c for c in saved["caveats"])
    assert any(c.startswith("Unequal training budgets") and "PPO 10/30" in c and "GRPO 4/4" in c
               for c in saved["caveats"])
    assert "PPO and GRPO were trained to maximise" in saved["scored_by"]


def test_unequal_budget_caveat_present_only_when_budgets_differ():
    equal = {"reward": _run("completed", 8, 8), "dpo": _run("completed", 30, 30), "ppo": _run("completed", 30, 30),
             "grpo": _run("completed", 30, 30)}
    assert budget_caveats(equal, ["dpo", "ppo", "grpo"]) == []
    fewer = dict(equal, grpo=_run("completed", 4, 4))  # completed, but a smaller budget
    caveats = budget_caveats(fewer, ["dpo", "ppo", "grpo"])
    assert len(caveats) == 1 and "Unequal training budgets" in caveats[0] and "unfair" in caveats[0]
    stopped = dict(equal, ppo=_run("stopped", 10, 30))  # same budget, not completed
    caveats = budget_caveats(stopped, ["dpo", "ppo", "grpo"])
    assert any("PPO did not complete its training: status stopped, 10/30" in c for c in caveats)
    assert any("Unequal training budgets" in c for c in caveats)
    weak_rm = dict(equal, reward=_run("stopped", 3, 8))
    assert any(c.startswith("The reward model") for c in budget_caveats(weak_rm, ["dpo"]))
    failed = dict(equal, grpo={"status": "failed", "error": "RuntimeError: boom", "steps_done": 0, "total_steps": 30})
    assert any("GRPO failed (RuntimeError: boom)" in c for c in budget_caveats(failed, ["dpo", "ppo"]))


def test_headline_recommendation_names_the_scorer_budgets_and_ties():
    methods = {"reward": _run("completed", 8, 8), "dpo": _run("completed", 30, 30), "ppo": _run("stopped", 10, 30)}
    evaluation = _evaluation({"base": [0.0, 0.2], "dpo": [0.0, 0.1], "ppo": [0.5, 0.2]})  # PPO: 1 win, 1 tie
    recs = recommendations(methods, evaluation)
    best = next(r for r in recs if r.startswith("Highest mean reward"))
    assert "scored by the reward model trained in this run" in best and "PPO was trained to maximise" in best
    assert "favours it" in best and "DPO never saw it" in best and ": PPO, 10/30 steps" in best
    assert "1 win, 1 tie (counted as half; a tie is identical answer, or reward scores within 0.0001) and 0 losses" in best
    assert any("Unequal training budgets" in r for r in recs)
    assert scorer_note(["dpo"]) == "scored by the reward model trained in this run (runs/reward); DPO never saw it"


# ----------------------------------------------------------------------------- evaluation progress


@pytest.fixture(scope="module")
def policy_and_scorer(tiny_source, tokenizer):
    from peft import get_peft_model

    from alignment.generation import RewardScorer
    from alignment.models import load_causal_lm, load_sequence_classifier, lora_config

    torch.manual_seed(0)
    model = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config(), adapter_name="dpo")
    model.add_adapter("grpo", lora_config())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    scorer = RewardScorer(load_sequence_classifier(tiny_source, tokenizer, seed=0), tokenizer, batch_size=5)
    return model.eval(), scorer


def test_evaluation_reports_each_batch_and_keeps_every_number(policy_and_scorer, tokenizer):
    from alignment.evaluation import PHASES, DecodingConfig, evaluate_models

    policy, scorer = policy_and_scorer
    prompts = [{"category": "c", "prompt": p} for p in ("Name a color.", "Say hi.", "What is 2+2?", "Name a fruit.")]
    decoding = DecodingConfig(max_new_tokens=6, batch_size=5, logprob_batch_size=3, seed=3)  # 12 rows
    calls = []
    with_progress = evaluate_models(policy, tokenizer, scorer, prompts, ["base", "dpo", "grpo"], decoding,
                                    progress=lambda phase, done, total: calls.append((phase, done, total)))
    without = evaluate_models(policy, tokenizer, scorer, prompts, ["base", "dpo", "grpo"], decoding)
    assert with_progress == without  # same batches, same answers, same numbers

    assert [p for i, (p, _, _) in enumerate(calls) if i == 0 or calls[i - 1][0] != p] == list(PHASES)
    by_phase = {p: [(d, t) for q, d, t in calls if q == p] for p in PHASES}
    gen = by_phase["generating answers"]
    assert {t for _, t in gen} == {3 * 6}  # 3 generation batches of up to 6 tokens
    assert len(gen) > 3 and gen[-1][0] == 18  # per decoded token, not only per batch
    assert by_phase["KL to base"] == [(1, 3), (2, 3), (3, 3)]  # 8 aligned rows, 3 per log-ratio batch
    assert by_phase["scoring"] == [(1, 3), (2, 3), (3, 3)]  # 12 answers, 5 per scoring batch
    for steps in by_phase.values():
        assert [d for d, _ in steps] == sorted(d for d, _ in steps)


# ----------------------------------------------------------------------------- learn


def test_excerpts_are_verbatim_lines_of_losses_py():
    source_lines = {line.strip() for line in open(losses.__file__, encoding="utf-8").read().splitlines()}
    for lesson in LESSONS:
        assert lesson.excerpts, lesson.key
        check_excerpts(lesson)
        for ex in lesson.excerpts:
            assert ex.function.__module__ == "alignment.losses"
            for line in ex.lines.splitlines():
                assert line.strip() in source_lines, (lesson.key, line)
    changed = Excerpt(losses.dpo_loss, "h = chosen_logratios + rejected_logratios")
    assert not excerpt_is_verbatim(changed)
    shuffled = Excerpt(losses.bradley_terry_loss, "return -F.logsigmoid(diff)\ndiff = chosen_rewards - rejected_rewards")
    assert not excerpt_is_verbatim(shuffled)  # lines must be consecutive, in order


def test_learn_code_shows_computing_lines_without_docstrings():
    for lesson in LESSONS:
        code = lesson_excerpt_code(lesson)
        assert '"""' not in code
        for ex in lesson.excerpts:
            doc_lines = [line.strip() for line in (ex.function.__doc__ or "").splitlines() if len(line.strip()) > 20]
            assert doc_lines and not any(line in code for line in doc_lines), lesson.key
            assert f"inside {ex.function.__name__}(" in code
    assert function_body(losses.bradley_terry_loss)[0] == "diff = chosen_rewards - rejected_rewards"


def test_worked_numbers_are_the_loss_functions_outputs():
    rm = worked_example(LESSON["reward"])
    i = rm["inputs"]
    expected = losses.bradley_terry_loss(torch.tensor(i["chosen_rewards"]), torch.tensor(i["rejected_rewards"]))
    assert rm["values"]["loss"] == pytest.approx(float(expected[0]))
    assert rm["values"]["loss"] == pytest.approx(math.log1p(math.exp(-(1.2 - 0.3))), abs=1e-6)  # -log sigma(0.9)
    assert f"{rm['values']['loss']:.3f}" in rm["text"] and rm["values"]["loss_shifted"] == pytest.approx(
        rm["values"]["loss"], abs=1e-6)

    dpo = worked_example(LESSON["dpo"])
    i = dpo["inputs"]
    loss, chosen, rejected = losses.dpo_loss(*(torch.tensor(i[k]) for k in ("policy_chosen_logps",
                                                                          "policy_rejected_logps",
                                                                          "ref_chosen_logps", "ref_rejected_logps")),
                                             beta=i["beta"])
    assert dpo["values"]["loss"] == pytest.approx(float(loss[0]))
    h = ((i["policy_chosen_logps"][0] - i["ref_chosen_logps"][0])
         - (i["policy_rejected_logps"][0] - i["ref_rejected_logps"][0]))
    assert dpo["values"]["loss"] == pytest.approx(math.log1p(math.exp(-i["beta"] * h)), abs=1e-6)
    assert dpo["values"]["chosen_reward"] == pytest.approx(float(chosen[0]))
    assert f"{dpo['values']['loss']:.3f}" in dpo["text"] and f"{float(rejected[0]):.3f}" in dpo["text"]

    ppo = worked_example(LESSON["ppo"])
    i = ppo["inputs"]
    loss, stats = losses.ppo_policy_loss(torch.tensor(i["logprobs"]), torch.tensor(i["old_logprobs"]),
                                         torch.tensor(i["advantages"]), torch.ones(1, 1), clip_range=i["clip_range"])
    assert ppo["values"]["loss"] == pytest.approx(float(loss))
    assert ppo["values"]["loss"] == pytest.approx(-(1 + i["clip_range"]) * i["advantages"][0][0], abs=1e-5)  # clipped
    assert ppo["values"]["clipfrac"] == 1.0 and f"{ppo['values']['loss']:.2f}" in ppo["text"]

    grpo = worked_example(LESSON["grpo"])
    i = grpo["inputs"]
    adv = losses.grpo_advantages(torch.tensor(i["rewards"]), group_size=i["group_size"]).tolist()
    assert grpo["values"]["advantages"] == pytest.approx(adv)
    r = torch.tensor(i["rewards"])
    assert adv == pytest.approx(((r - r.mean()) / (r.std() + 1e-4)).tolist())
    assert all(f"{a:+.3f}" in grpo["text"] for a in adv)


def test_worked_numbers_follow_the_code(monkeypatch):
    """Nothing hard-coded: a different loss function gives a different worked number."""
    monkeypatch.setattr(losses, "bradley_terry_loss", lambda chosen, rejected, margin=None: (chosen - rejected) ** 2)
    assert worked_example(LESSON["reward"])["values"]["loss"] == pytest.approx(0.81)
