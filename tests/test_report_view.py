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
from alignment.report import (HEADLINE_COLUMNS, _win_counts, budget_caveats, headline_rows, recommendations,
                              scorer_note, write_reports)

LESSON = {lesson.key: lesson for lesson in LESSONS}


# ----------------------------------------------------------------------------- report


def _summary(mean_reward, kl=0.1, length=20.0):
    return {"mean_reward": mean_reward, "reward_distribution": {"mean": mean_reward, "std": 0.1, "min": 0, "p25": 0,
                                                                "median": 0, "p75": 0, "max": 0},
            "mean_length_tokens": length, "eos_rate": 0.5, "kl_to_base": kl, "kl_ci_low": kl / 2, "kl_ci_high": 2 * kl,
            "per_category_mean_reward": {"a": mean_reward}, "n_prompts": 2}


def _evaluation(rewards: dict, rules: dict | None = None, lengths: dict | None = None) -> dict:
    """Two prompts per model; ``rewards``: {model: [r1, r2]} (the proxy RM), ``rules``: {model: [s1, s2]} (rule
    scores); win rates and length-controlled win rates as the evaluation computes them, keyed by evaluator."""
    from alignment.evaluation import bootstrap_win_rate, evaluator_info
    from alignment.stats import length_controlled_win_rate, win_outcomes

    lengths = lengths or {name: [20, 20] for name in rewards}
    models = {}
    for name, rs in rewards.items():
        samples = [{"prompt": f"p{i}", "category": "a", "response": "x", "reward": r, "length_tokens": lengths[name][i],
                    "ended_with_eos": True, "kl_to_base": 0.0 if name == "base" else 0.1} for i, r in enumerate(rs)]
        summary = _summary(sum(rs) / 2, 0.0 if name == "base" else 0.1, sum(lengths[name]) / 2)
        if name != "base":
            scores = {"proxy_rm": (rs, rewards["base"]), **({"rules": (rules[name], rules["base"])} if rules else {})}
            diff = [a - b for a, b in zip(lengths[name], lengths["base"])]
            summary["win_rate_vs_base"] = {e: bootstrap_win_rate(m, b) for e, (m, b) in scores.items()}
            summary["lc_win_rate_vs_base"] = {e: length_controlled_win_rate(win_outcomes(m, b), diff)
                                              for e, (m, b) in scores.items()}
        models[name] = {"samples": samples, "summary": summary}
    return {"decoding": {"seed": 0}, "samples_per_prompt": 1,
            "evaluators": evaluator_info(list(rewards), rules_coverage=(2, 0) if rules else None), "models": models}


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
    assert scorer_note(["dpo"]) == ("scored by the reward model trained in this run (its reward run, "
                                    "runs/reward/<run-id>); DPO never saw it")


def _columns(report) -> dict:
    return {r[0]: dict(zip(HEADLINE_COLUMNS, r)) for r in headline_rows(report)}


def test_headline_shows_every_evaluator_side_by_side_with_intervals(tmp_path):
    methods = {"reward": _run("completed", 8, 8), "dpo": _run("completed", 30, 30), "ppo": _run("completed", 30, 30)}
    evaluation = _evaluation({"base": [0.0, 0.2], "dpo": [0.0, 0.1], "ppo": [0.5, 0.3]},
                             rules={"base": [0.0, 1.0], "dpo": [1.0, 1.0], "ppo": [0.0, 0.0]},
                             lengths={"base": [10, 20], "dpo": [12, 18], "ppo": [40, 50]})
    report = write_reports(tmp_path, {"model": {}}, methods, evaluation)
    rows = _columns(report)
    ppo, dpo = evaluation["models"]["ppo"]["summary"], evaluation["models"]["dpo"]["summary"]
    wr = ppo["win_rate_vs_base"]["proxy_rm"]
    assert rows["ppo"]["win vs base: proxy RM [95% CI]"] == (
        f"{wr['win_rate']:.0%} [{wr['ci_low']:.0%}–{wr['ci_high']:.0%}]") == "100% [100%–100%]"
    assert rows["ppo"]["win vs base: rules [95% CI]"] == "25% [0%–50%]"  # a loss and a tie by the rules
    assert rows["dpo"]["win vs base: rules [95% CI]"] == "75% [50%–100%]"
    assert rows["ppo"]["win vs base: gold RM [95% CI]"] == "-" and rows["base"]["win vs base: proxy RM [95% CI]"] == "-"
    lc = ppo["lc_win_rate_vs_base"]["proxy_rm"]
    lc_text = f"{lc['lc_win_rate']:.0%} [{lc['ci_low']:.0%}–{lc['ci_high']:.0%}]"
    assert rows["ppo"]["LC win vs base: proxy RM [95% CI]"] == lc_text
    assert rows["ppo"]["KL to base [95% CI]"] == "0.100 [0.050–0.200]"
    assert rows["base"]["KL to base [95% CI]"] == "0.000"
    # the report file: LC win rate with the mean length per model, the evaluators and who trained on them
    saved = json.loads((tmp_path / "alignment_comparison_report.json").read_text())
    assert saved["length_controlled"]["ppo"]["mean_length_tokens"] == 45.0
    assert saved["length_controlled"]["ppo"]["by_evaluator"]["rules"]["lc_win_rate"] == pytest.approx(
        ppo["lc_win_rate_vs_base"]["rules"]["lc_win_rate"])
    assert saved["evaluators"]["proxy_rm"]["trained"] == ["ppo"] and saved["evaluators"]["rules"]["trained"] == []
    headline = json.loads((tmp_path / "final_summary.json").read_text())["headline"]
    assert headline["dpo"]["win_rate_vs_base"] == {"proxy_rm": dpo["win_rate_vs_base"]["proxy_rm"]["win_rate"],
                                                   "rules": 0.75}
    assert headline["ppo"]["lc_win_rate_vs_base"]["proxy_rm"] == pytest.approx(lc["lc_win_rate"])
    # the findings name each evaluator's win rate and the LC one with the lengths
    recs = recommendations(methods, evaluation)
    line = next(r for r in recs if r.startswith("PPO vs base:"))
    assert "proxy RM 100% [100%–100%], rules 25% [0%–50%]" in line and "length-controlled (proxy RM)" in line
    assert "45.0 tokens per answer vs base 15.0" in line
    # the end-of-run table prints the same columns
    from class7_1 import format_summary_table
    table = format_summary_table(report)
    assert "win: proxy RM" in table and "win: rules" in table and "LC win: proxy RM" in table
    assert "100% [100%–100%]" in table and "25% [0%–50%]" in table and "gold RM" not in table


def test_caveats_always_name_the_proxy_evaluators_bias(tmp_path):
    equal = {"reward": _run("completed", 8, 8), "dpo": _run("completed", 30, 30), "ppo": _run("completed", 30, 30),
             "grpo": _run("completed", 30, 30)}
    evaluation = _evaluation({"base": [0.0, 0.2], "dpo": [0.0, 0.1], "ppo": [0.5, 0.3], "grpo": [0.1, 0.3]},
                             rules={"base": [0.0, 1.0], "dpo": [1.0, 1.0], "ppo": [0.0, 0.0], "grpo": [0.0, 1.0]})
    caveats = write_reports(tmp_path, {"model": {}}, equal, evaluation)["caveats"]
    assert budget_caveats(equal, ["dpo", "ppo", "grpo"]) == []  # no budget caveat, the proxy caveat still there
    assert len(caveats) == 1 and caveats[0].startswith("PPO and GRPO were trained to maximise this reward model")
    assert "biased upward" in caveats[0] and "rules win rate" in caveats[0]
    saved = json.loads((tmp_path / "final_summary.json").read_text())
    assert saved["caveats"] == caveats
    dpo_only = _evaluation({"base": [0.0, 0.2], "dpo": [0.0, 0.1]})
    caveats = write_reports(tmp_path, {"model": {}}, {"dpo": _run("completed", 30, 30)}, dpo_only)["caveats"]
    assert len(caveats) == 1 and "preference pairs DPO learned from" in caveats[0] and "rules" not in caveats[0]
    from ui.report_tab import _status_text
    shown = _status_text(json.loads((tmp_path / "alignment_comparison_report.json").read_text()))
    assert "Caveats" in shown and "preference pairs DPO learned from" in shown and "**proxy RM**" in shown
    dpo_only["evaluators"]["proxy_rm"]["precision"] = "bf16 autocast"  # the scoring precision is shown
    shown = _status_text(write_reports(tmp_path, {"model": {}}, {"dpo": _run("completed", 30, 30)}, dpo_only))
    assert "scores in bf16 autocast)" in shown


def test_evaluation_prompts_seen_in_training_are_a_caveat(tmp_path):
    from alignment.data import seen_in_training

    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Name a color."}]
    train = [{"prompt": [{"role": "user", "content": "What is 2 plus 2?"}]},  # as the loaders store a plain prompt
             {"prompt": chat}]
    prompts = [{"prompt": " What is 2 plus 2? "}, {"prompt": "Name a color."}, {"prompt": [dict(m) for m in chat]}]
    seen = seen_in_training(prompts, train)
    assert (seen["count"], seen["of"], seen["prompts"][0]) == (2, 3, "What is 2 plus 2?")
    assert seen_in_training(prompts[1:2], train)["count"] == 0  # the last turn alone is another prompt
    evaluation = _evaluation({"base": [0.0, 0.2], "dpo": [0.0, 0.1]})
    plain = write_reports(tmp_path, {"model": {}}, {"dpo": _run("completed", 30, 30)}, evaluation)["caveats"]
    assert not any("training prompts" in c for c in plain)
    evaluation["eval_prompts_in_training"] = seen
    caveats = write_reports(tmp_path, {"model": {}}, {"dpo": _run("completed", 30, 30)}, evaluation)["caveats"]
    assert caveats[:-1] == plain
    assert caveats[-1].startswith("2 of the 3 evaluation prompts are also training prompts (for example 'What is 2")
    evaluation["eval_prompts_in_training"] = dict(seen, prompts=["word " * 500])  # a long conversation stays short
    assert len(write_reports(tmp_path, {"model": {}}, {"dpo": _run("completed", 30, 30)}, evaluation)["caveats"][-1]) < 400


def test_reports_written_before_evaluators_still_read():
    """A report from before the evaluators (one flat win rate per model) shows it as the proxy RM's."""
    flat = {"win_rate": 0.6, "ci_low": 0.4, "ci_high": 0.8, "n": 30, "wins": 15, "ties": 6, "losses": 9,
            "tie_rule": "identical answer, or reward scores within 0.0001"}
    report = {"evaluation": {"models": {"base": _summary(0.0, 0.0), "dpo": dict(_summary(0.1), win_rate_vs_base=flat)}},
              "methods": {"dpo": _run("completed", 30, 30)}}
    rows = _columns(report)
    assert rows["dpo"]["win vs base: proxy RM [95% CI]"] == "60% [40%–80%]"
    assert rows["dpo"]["win vs base: rules [95% CI]"] == "-"
    evaluation = {"models": {n: {"summary": s, "samples": []} for n, s in report["evaluation"]["models"].items()}}
    assert _win_counts(evaluation, "dpo") == (15, 6, 9) and _win_counts(evaluation, "dpo", "rules") is None


def test_win_rate_plot_has_one_bar_series_per_evaluator():
    from alignment.report import figures, win_rate_figure

    evaluation = _evaluation({"base": [0.0, 0.2], "dpo": [0.0, 0.1], "ppo": [0.5, 0.3]},
                             rules={"base": [0.0, 1.0], "dpo": [1.0, 1.0], "ppo": [0.0, 0.0]})
    fig = figures({}, evaluation)["win_rates"]
    bars = {t.name: t for t in fig.data}
    assert set(bars) == {"proxy RM", "rules", "LC proxy RM"}
    assert list(bars["rules"].x) == ["DPO", "PPO"] and list(bars["rules"].y) == [0.75, 0.25]
    lopsided = {"base": {}, "dpo": {"win_rate_vs_base": {"gold_rm": {"win_rate": 0.6, "ci_low": 0.3, "ci_high": 0.7}}}}
    bar = win_rate_figure(lopsided).data[0]
    assert bar.name == "gold RM" and list(bar.y) == [0.6]
    assert (bar.error_y.arrayminus[0], bar.error_y.array[0]) == pytest.approx((0.3, 0.1))  # down to 30%, up to 70%


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
    # 8 aligned rows, 3 per log-ratio batch, less those that repeat base's answer (they reuse its log-probs)
    base = [s["response"] for s in with_progress["models"]["base"]["samples"]]
    forward = sum(s["response"] != b for m in ("dpo", "grpo")
                  for s, b in zip(with_progress["models"][m]["samples"], base))
    assert forward > 3
    assert by_phase["KL to base"] == [(i + 1, -(-forward // 3)) for i in range(-(-forward // 3))]
    assert by_phase["scoring"] == [(1, 3), (2, 3), (3, 3)]  # 12 answers, 5 per scoring batch
    for steps in by_phase.values():
        assert [d for d, _ in steps] == sorted(d for d, _ in steps)


class LengthGold:
    """A stand-in second reward model (``gold_rm``): prefers shorter answers (score = -characters)."""

    batch_size = 4

    def score(self, prompts, texts):
        return torch.tensor([-float(len(t)) for t in texts])


@pytest.fixture(scope="module")
def policy_with_twin(tiny_source, tokenizer):
    """Adapters "dpo" (random LoRA weights) and "twin" (LoRA B = 0: exactly the base model), and a reward model."""
    from peft import get_peft_model

    from alignment.generation import RewardScorer
    from alignment.models import load_causal_lm, load_sequence_classifier, lora_config

    torch.manual_seed(0)
    model = get_peft_model(load_causal_lm(tiny_source, tokenizer), lora_config(), adapter_name="dpo")
    model.add_adapter("twin", lora_config())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name and ".dpo." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    scorer = RewardScorer(load_sequence_classifier(tiny_source, tokenizer, seed=0), tokenizer, batch_size=5)
    return model.eval(), scorer


def test_samples_per_prompt_stay_paired_and_every_evaluator_scores(policy_with_twin, tokenizer):
    from alignment.evaluation import PHASES, DecodingConfig, evaluate_models
    from alignment.rules import score_answer

    policy, scorer = policy_with_twin
    prompts = [{"category": "factual", "prompt": "What is the capital of France?"},  # the built-in rule applies
               {"category": "c", "prompt": "Say hi."},  # no rule: left out of the rules win rate, counted
               {"category": "verbosity", "prompt": "Name a fruit.", "rule": {"kind": "concise", "max_words": 3}}]
    decoding = DecodingConfig(max_new_tokens=6, batch_size=8, logprob_batch_size=4, seed=3)
    calls = []
    ev = evaluate_models(policy, tokenizer, scorer, prompts, ["base", "twin", "dpo"], decoding,
                         progress=lambda phase, done, total: calls.append((phase, done, total)),
                         samples_per_prompt=2, gold_scorer=LengthGold())
    assert ev["samples_per_prompt"] == 2 and list(ev["evaluators"]) == ["proxy_rm", "gold_rm", "rules"]
    assert ev["evaluators"]["proxy_rm"]["trained"] == [] and ev["evaluators"]["rules"]["unscored_prompts"] == 1
    base, twin = ev["models"]["base"]["samples"], ev["models"]["twin"]["samples"]
    assert [(s["sample"], s["prompt"]) for s in base] == [(k, p["prompt"]) for k in (0, 1) for p in prompts]
    # every model's answer to (prompt, sample) uses that pair's noise: the twin of base answers exactly as base
    assert [s["response"] for s in twin] == [s["response"] for s in base]
    assert any(base[i]["response"] != base[i + 3]["response"] for i in range(3))  # samples differ from each other
    for evaluator, wr in ev["models"]["twin"]["summary"]["win_rate_vs_base"].items():
        assert wr["ties"] == wr["n"] and wr["win_rate"] == 0.5, evaluator
    rules = ev["models"]["twin"]["summary"]["win_rate_vs_base"]["rules"]
    assert (rules["n"], rules["n_prompts"], rules["n_samples"], rules["n_excluded"]) == (4, 2, 2, 1)
    for s in ev["models"]["dpo"]["samples"]:
        assert s["gold_reward"] == -len(s["response"])
        assert s["rule_score"] == score_answer(next(p for p in prompts if p["prompt"] == s["prompt"]), s["response"])
    assert [s["rule_score"] is None for s in base] == [False, True, False] * 2
    dpo = ev["models"]["dpo"]["summary"]
    assert set(dpo["win_rate_vs_base"]) == set(dpo["lc_win_rate_vs_base"]) == {"proxy_rm", "gold_rm", "rules"}
    assert (dpo["win_rate_vs_base"]["gold_rm"]["n_prompts"], dpo["win_rate_vs_base"]["gold_rm"]["n"]) == (3, 6)
    assert dpo["kl_ci_low"] <= dpo["kl_to_base"] <= dpo["kl_ci_high"] and dpo["n_answers"] == 6
    assert dpo["mean_score"]["gold_rm"] == pytest.approx(-sum(len(s["response"]) for s in
                                                               ev["models"]["dpo"]["samples"]) / 6)
    scoring = [(d, t) for p, d, t in calls if p == PHASES[2]]
    assert scoring[-1] == (4 + 5, 4 + 5)  # 18 answers: 4 proxy batches of 5, then 5 gold batches of 4
    with pytest.raises(ValueError, match="gold_rm"):
        evaluate_models(policy, tokenizer, scorer, prompts, ["base", "dpo"], decoding, evaluators=["gold_rm"])
    with pytest.raises(ValueError, match="samples_per_prompt"):
        evaluate_models(policy, tokenizer, scorer, prompts, ["base", "dpo"], decoding, samples_per_prompt=0)


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


def test_findings_say_why_an_independent_evaluator_is_inconclusive():
    """A gold-RM interval that contains 50% is called inconclusive, with its half-width, prompts x answers and ties;
    one that excludes 50% is not."""
    from alignment.report import evaluator_findings

    def rate(lo, hi, ties):
        return {"win_rate": (lo + hi) / 2, "ci_low": lo, "ci_high": hi, "half_width": (hi - lo) / 2, "n": 120,
                "n_prompts": 30, "n_samples": 4, "wins": 50, "ties": ties, "losses": 120 - 50 - ties}

    models = {"base": {"summary": {"mean_length_tokens": 20.0}},
              "dpo": {"summary": {"mean_length_tokens": 20.0, "win_rate_vs_base": {
                  "proxy_rm": rate(0.55, 0.7, 3), "gold_rm": rate(0.44, 0.62, 17)}}},
              "ppo": {"summary": {"mean_length_tokens": 20.0, "win_rate_vs_base": {
                  "proxy_rm": rate(0.55, 0.7, 3), "gold_rm": rate(0.52, 0.66, 9)}}}}
    dpo, ppo = evaluator_findings({"models": models})
    assert "inconclusive by the gold RM" in dpo and "half-width about 9%" in dpo and "30 prompts x 4 answers" in dpo
    assert "gold RM ties 17 of 120" in dpo
    assert "more answers per prompt (--eval-samples) or more prompts narrow it" in dpo  # no components given
    assert "inconclusive" not in ppo
    # with the variance components: how much of the spread is the prompts', and what doubling either would give
    models["dpo"]["summary"]["win_rate_vs_base"]["gold_rm"].update(var_between_prompts=0.04, var_within_prompt=0.2)
    dpo = evaluator_findings({"models": models})[0]
    assert "44% of its spread comes from the prompts" in dpo  # 0.04 / (0.04 + 0.2 / 4)
    assert "8 answers per prompt (--eval-samples) would narrow it to about 8%" in dpo  # 9% x sqrt(0.065 / 0.09)
    assert "60 prompts x 4 answers (--eval-prompts) to about 6%" in dpo  # 9% / sqrt(2)


def test_findings_name_the_proxy_gold_gap_of_a_model_trained_on_the_proxy():
    """PPO, trained on the proxy RM, 70% by it and 52% by the gold RM: the 18-point gap is called out as what
    over-optimisation looks like; DPO with the same numbers (never trained on the proxy) and PPO with a gap under
    10 points are not."""
    from alignment.report import evaluator_findings

    def rate(w):
        return {"win_rate": w, "ci_low": w - 0.1, "ci_high": w + 0.1, "half_width": 0.1, "n": 120,
                "n_prompts": 30, "n_samples": 4, "wins": 60, "ties": 0, "losses": 60}

    def summary(proxy, gold):
        return {"summary": {"mean_length_tokens": 20.0,
                            "win_rate_vs_base": {"proxy_rm": rate(proxy), "gold_rm": rate(gold)}}}

    evaluation = {"evaluators": {"proxy_rm": {"trained": ["ppo", "grpo"]}, "gold_rm": {"trained": []}},
                  "models": {"base": {"summary": {}}, "dpo": summary(0.70, 0.52), "ppo": summary(0.70, 0.52),
                             "grpo": summary(0.70, 0.61)}}
    dpo, ppo, grpo = evaluator_findings(evaluation)
    assert "rates it 18 points above the gold RM" in ppo and "over-optimisation" in ppo
    assert "points above" not in dpo and "points above" not in grpo


def test_frontier_has_one_point_per_model_and_evaluator():
    """The reward-vs-KL frontier: each model's KL (with its interval) against its mean score by each evaluator, one
    legend entry per model."""
    from alignment.report import frontier_figure

    summaries = {"base": {"kl_to_base": 0.0, "kl_ci_low": 0.0, "kl_ci_high": 0.0,
                          "mean_score": {"proxy_rm": 0.1, "gold_rm": 0.2}},
                 "ppo": {"kl_to_base": 2.0, "kl_ci_low": 1.5, "kl_ci_high": 2.6,
                         "mean_score": {"proxy_rm": 0.9, "gold_rm": 0.15}}}
    fig = frontier_figure(summaries)
    points = {(t.name, t.yaxis): (t.x[0], t.y[0]) for t in fig.data}
    assert points == {("BASE", "y"): (0.0, 0.1), ("BASE", "y2"): (0.0, 0.2),
                      ("PPO", "y"): (2.0, 0.9), ("PPO", "y2"): (2.0, 0.15)}
    ppo = [t for t in fig.data if t.name == "PPO"][0]
    assert list(ppo.error_x.array) == [pytest.approx(0.6)] and list(ppo.error_x.arrayminus) == [pytest.approx(0.5)]
    assert sum(t.showlegend for t in fig.data) == 2
    colors = {t.name: set() for t in fig.data}
    for t in fig.data:
        colors[t.name].add(t.marker.color)
    assert all(len(c) == 1 for c in colors.values()) and colors["BASE"] != colors["PPO"]  # a model keeps its colour
