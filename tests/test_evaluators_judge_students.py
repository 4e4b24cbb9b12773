"""The two evaluators that need no model of ours: the LLM judge (both orders, a disagreement is a tie, its cost in
requests, failures counted and never fatal, absent when not configured) against a local OpenAI-compatible server
on 127.0.0.1 with the real openai client, and the students' arena votes as a Bradley-Terry win probability vs base
(absent without votes). Never the real API: there is no internet here, and conftest empties the keys."""

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from alignment.arena import ArenaVotes, bradley_terry, students_evaluation
from alignment.judge import Judge, JudgeConfig, judge_evaluation
from fake_openai import FakeChatServer, serve

KEY = "sk-test-judge-evaluator-0123"


class FakeJudgeServer(FakeChatServer):
    """``/v1/chat/completions`` deciding from the two responses it is shown (thread-safe, order-free):
    FAIL in either -> HTTP 500; GARBLE -> an unparseable reply; FIRST in either -> "A" (a judge that always prefers
    the first position); else the response containing GOOD wins, "tie" when neither does."""

    requests: list = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"]
        a = text.split("[Response A]")[1].split("[Response B]")[0].strip()
        b = text.split("[Response B]")[1].split("Answer with")[0].strip()
        with type(self).lock:
            type(self).requests.append((a, b))
        if "FAIL" in a + b:
            return self.send(500, {"error": {"message": "server exploded"}}, {"retry-after-ms": "10"})
        if "GARBLE" in a + b:
            reply = "I cannot decide"
        elif "FIRST" in a + b:
            reply = "A"
        else:
            reply = "A" if "GOOD" in a else "B" if "GOOD" in b else "tie"
        self.reply(body, reply)


@pytest.fixture()
def server():
    FakeJudgeServer.requests = []
    with serve(FakeJudgeServer) as url:
        yield url


def _judge(url, retries=0):
    return Judge(JudgeConfig(model="fake-judge", base_url=url, api_key=KEY, timeout_s=5, max_retries=retries,
                             concurrency=3))


def _summary(mean_reward, kl, length):
    return {"mean_reward": mean_reward, "reward_distribution": {"mean": mean_reward, "std": 0.1, "min": 0, "p25": 0,
                                                                "median": 0, "p75": 0, "max": 0},
            "mean_length_tokens": length, "eos_rate": 1.0, "kl_to_base": kl, "kl_ci_low": kl, "kl_ci_high": kl,
            "per_category_mean_reward": {"a": mean_reward}, "n_prompts": 1}


def _evaluation(answers: dict[str, list[str]], samples: int = 1) -> dict:
    """An evaluation as ``evaluate_models`` writes it (samples sample-major: entry s * n + i), with the answers given
    per model; ``samples`` answers per prompt."""
    models = {}
    n = len(answers["base"]) // samples
    for name, texts in answers.items():
        recs = [{"prompt": f"prompt {r % n}", "category": "a", "sample": r // n, "response": t, "reward": 0.0,
                 "length_tokens": len(t.split()), "ended_with_eos": True, "kl_to_base": 0.0}
                for r, t in enumerate(texts)]
        models[name] = {"samples": recs, "summary": _summary(0.0, 0.0 if name == "base" else 0.1,
                                                             sum(r["length_tokens"] for r in recs) / len(recs))}
    return {"decoding": {"seed": 0}, "samples_per_prompt": samples, "evaluators": {}, "models": models}


# ----------------------------------------------------------------------------- the LLM judge


def test_judge_asks_both_orders_for_every_pair_and_records_the_cost(server):
    ev = _evaluation({"base": ["meh one", "meh two", "meh three", "GOOD base four", "same answer"],
                      "dpo": ["GOOD one", "GOOD two", "GOOD three", "bad four", "same answer"]})
    info = judge_evaluation(_judge(server), ev)
    # 4 pairs differ from base: 2 requests each, one per order; the identical answer is a tie without a request
    assert len(FakeJudgeServer.requests) == 8
    for model_answer, base_answer in [("GOOD one", "meh one"), ("bad four", "GOOD base four")]:
        assert FakeJudgeServer.requests.count((model_answer, base_answer)) == 1  # the model's answer first
        assert FakeJudgeServer.requests.count((base_answer, model_answer)) == 1  # then base's first
    assert not any("same answer" in a for a, _ in FakeJudgeServer.requests)
    assert (info["requests"], info["failed_requests"], info["http_requests"]) == (8, 0, 8)
    assert info["model"] == "fake-judge" and info["pairs"] == 5 and info["identical_pairs"] == 1
    assert "8 requests" in info["description"] and info["trained"] == []
    assert ev["evaluators"]["judge"] is info
    wr = ev["models"]["dpo"]["summary"]["win_rate_vs_base"]["judge"]
    assert (wr["wins"], wr["ties"], wr["losses"], wr["n"]) == (3, 1, 1, 5)
    assert wr["win_rate"] == pytest.approx(3.5 / 5) and wr["ci_low"] <= wr["win_rate"] <= wr["ci_high"]
    assert wr["judge_model"] == "fake-judge" and "position bias" in wr["tie_rule"]
    assert "judge" in ev["models"]["dpo"]["summary"]["lc_win_rate_vs_base"]
    assert "judge" not in (ev["models"]["base"]["summary"].get("win_rate_vs_base") or {})
    recs = ev["models"]["dpo"]["samples"]
    assert recs[0]["judge_vs_base"] == {"outcome": "win", "model_first": "A", "base_first": "B"}
    assert recs[3]["judge_vs_base"]["outcome"] == "loss" and recs[4]["judge_vs_base"]["identical"]


def test_disagreement_between_the_orders_is_a_tie(server):
    # a judge that always says "A": the model wins when shown first and loses when shown second
    ev = _evaluation({"base": ["meh one", "meh two", "meh three"], "ppo": ["FIRST one", "FIRST two", "FIRST three"]})
    judge_evaluation(_judge(server), ev)
    assert len(FakeJudgeServer.requests) == 6
    wr = ev["models"]["ppo"]["summary"]["win_rate_vs_base"]["judge"]
    assert (wr["wins"], wr["ties"], wr["losses"]) == (0, 3, 0) and wr["win_rate"] == 0.5
    assert wr["order_disagreements"] == 3
    assert ev["models"]["ppo"]["samples"][0]["judge_vs_base"] == {"outcome": "tie", "model_first": "A",
                                                                  "base_first": "A"}


def test_judge_failures_are_counted_as_missing_not_fatal(server):
    ev = _evaluation({"base": ["meh one", "meh two", "meh three", "meh four"],
                      "dpo": ["GOOD one", "FAIL two", "GARBLE three", "GOOD four"],
                      "grpo": ["FAIL a", "FAIL b", "FAIL c", "FAIL d"]})
    seen = []
    info = judge_evaluation(_judge(server, retries=1), ev, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (8, 8) and len(seen) == 8  # every pair reported, failed ones included
    # a failing pair stops after its first order (retried once by the client); the unparseable one asks both
    assert info["requests"] == 2 + 1 + 2 + 2 + 4 * 1
    assert info["failed_requests"] == 5 and info["http_requests"] == info["requests"] + 5  # one retry each
    assert info["failed_pairs"] == 6 and info["by_model"]["dpo"]["failed_pairs"] == 2
    assert "5 failed" in info["description"] and "6 pairs undecided" in info["description"]
    wr = ev["models"]["dpo"]["summary"]["win_rate_vs_base"]["judge"]
    assert (wr["n"], wr["n_excluded"], wr["wins"], wr["failed_pairs"]) == (2, 2, 2, 2) and wr["win_rate"] == 1.0
    assert "server exploded" in ev["models"]["dpo"]["samples"][1]["judge_vs_base"]["error"]
    assert ev["models"]["dpo"]["samples"][2]["judge_vs_base"]["outcome"] is None
    # every pair of GRPO failed: no win rate, and the evaluators entry says how many failed
    assert "judge" not in (ev["models"]["grpo"]["summary"].get("win_rate_vs_base") or {})
    assert info["by_model"]["grpo"] == {"pairs": 4, "identical_pairs": 0, "failed_pairs": 4, "order_disagreements": 0}
    assert KEY not in json.dumps(ev)


def test_a_decided_pair_is_judged_once_per_server(server):
    """30 students' reports of the same models: the judge's verdicts are kept (``Judge(verdicts=...)``), so a pair
    is paid for once; a pair the judge failed on is asked again; the report says how many were reused."""
    from alignment.report import judge_caveat
    from alignment.serving.evaluations import EvaluationCache

    store = EvaluationCache(max_entries=100)
    cfg = JudgeConfig(model="fake-judge", base_url=server, api_key=KEY, timeout_s=5, max_retries=0, concurrency=3)
    answers = {"base": ["meh one", "meh two", "meh three"], "dpo": ["GOOD one", "meh two b", "GOOD FAIL"]}
    first_ev, second_ev = _evaluation(answers), _evaluation(answers)
    first = judge_evaluation(Judge(cfg, verdicts=store), first_ev)
    assert first["requests"] == 5 and first["reused_pairs"] == 0  # 2 + 2 + 1 (the failure, no retry)
    FakeJudgeServer.requests = []
    second = judge_evaluation(Judge(cfg, verdicts=store), second_ev)
    assert second["requests"] == 1 and second["reused_pairs"] == 2 and len(FakeJudgeServer.requests) == 1
    assert FakeJudgeServer.requests[0][0] == "GOOD FAIL"  # only the undecided pair was asked again
    win = [e["models"]["dpo"]["summary"]["win_rate_vs_base"]["judge"]["win_rate"] for e in (first_ev, second_ev)]
    assert win[0] == win[1] == 0.75  # the same verdicts: a win and a tie; the failed pair is left out
    assert "2 pairs decided for an earlier report" in second["description"]
    assert "2 pairs judged for an earlier report, reused without a request" in judge_caveat(second)
    other = JudgeConfig(model="other-judge", base_url=server, api_key=KEY, timeout_s=5, max_retries=0)
    assert judge_evaluation(Judge(other, verdicts=store), _evaluation(answers))["reused_pairs"] == 0  # another judge


def test_judge_with_several_samples_pairs_each_sample_with_base(server):
    # 2 prompts x 2 samples (sample-major); the model wins prompt 0 in both samples and loses prompt 1 in both
    ev = _evaluation({"base": ["b00", "GOOD b10", "b01", "GOOD b11"],
                      "dpo": ["GOOD 00", "bad 10", "GOOD 01", "bad 11"]}, samples=2)
    judge_evaluation(_judge(server), ev)
    wr = ev["models"]["dpo"]["summary"]["win_rate_vs_base"]["judge"]
    assert (wr["n"], wr["n_prompts"], wr["n_samples"], wr["wins"], wr["losses"]) == (4, 2, 2, 2, 2)
    assert ("GOOD 01", "b01") in FakeJudgeServer.requests and ("GOOD 01", "b00") not in FakeJudgeServer.requests


def _manager(tmp_path, monkeypatch):
    from class7_1 import AlignmentComparisonManager

    for var in ("JUDGE_API_KEY", "OPENAI_API_KEY", "JUDGE_BASE_URL", "OPENAI_BASE_URL", "JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    return AlignmentComparisonManager("tiny", output_dir=tmp_path / "out")


def test_judge_is_absent_when_not_configured_and_wired_when_it_is(server, tmp_path, monkeypatch):
    manager = _manager(tmp_path, monkeypatch)
    answers = {"base": ["meh one", "meh two"], "dpo": ["GOOD one", "GOOD two"]}
    ev = manager.add_judge_and_students(_evaluation(answers))
    assert "judge" not in ev["evaluators"] and "judge" not in (ev["models"]["dpo"]["summary"].get(
        "win_rate_vs_base") or {})
    assert FakeJudgeServer.requests == [] and "students" not in ev["evaluators"]  # no votes either
    # configured through .env: evaluate_alignment_methods adds it after the models' own evaluation
    (tmp_path / ".env").write_text(f"JUDGE_API_KEY={KEY}\nJUDGE_BASE_URL={server}\nJUDGE_MODEL=fake-judge\n"
                                   "JUDGE_MAX_RETRIES=0\n")
    import alignment.pipeline

    monkeypatch.setattr(alignment.pipeline, "evaluate_runs", lambda *a, **k: _evaluation(answers))
    monkeypatch.setattr(manager.pool, "scorer", lambda adapter: None)
    manager.datasets = {"eval_prompts": []}
    runs = {m: SimpleNamespace(adapter=tmp_path / m, path=tmp_path / m, key=f"class/{m}/1") for m in ("dpo", "reward")}
    ev = manager.evaluate_alignment_methods(progress=False, runs=runs)
    assert ev["evaluators"]["judge"]["model"] == "fake-judge" and ev["evaluators"]["judge"]["requests"] == 4
    assert ev["models"]["dpo"]["summary"]["win_rate_vs_base"]["judge"]["win_rate"] == 1.0
    # the app's report: the judge runs after the evaluation (off the model thread), and still lands in the report;
    # the same pairs were decided above, so the server's judges answer them without a request
    FakeJudgeServer.requests = []
    written = {}
    monkeypatch.setattr(manager, "pick_runs", lambda picks, user: runs)
    monkeypatch.setattr(manager, "generate_report", lambda results, evaluation, **kw: written.update(evaluation))
    steps = []
    manager.build_report(progress=lambda f, d: steps.append(d))
    judged = written["evaluators"]["judge"]
    assert judged["requests"] == 0 and judged["reused_pairs"] == 2 and FakeJudgeServer.requests == []
    assert written["models"]["dpo"]["summary"]["win_rate_vs_base"]["judge"]["win_rate"] == 1.0
    assert any(d.startswith("LLM judge: pair 2 of 2") for d in steps)


# ----------------------------------------------------------------------------- the students' votes


def _votes(tmp_path: Path) -> list[dict]:
    """A hand-made votes file: DPO beats base 8-2, PPO loses to base 2-7 with a tie, DPO beats PPO 3-1."""
    votes = []

    def add(a, b, winner, times):
        votes.extend({"id": f"{len(votes)}", "timestamp": f"2025-01-01T00:00:{len(votes):02d}+00:00", "voter": "v",
                      "prompt": "students' own prompt", "model_a": a, "model_b": b, "winner": winner}
                     for _ in range(times))

    add("dpo", "base", "A", 5)
    add("base", "dpo", "B", 3)
    add("base", "dpo", "A", 2)
    add("ppo", "base", "B", 7)
    add("base", "ppo", "B", 2)
    add("ppo", "base", "tie", 1)
    add("dpo", "ppo", "A", 3)
    add("ppo", "dpo", "A", 1)
    path = tmp_path / "arena_votes.json"
    path.write_text(json.dumps({"votes": votes}))
    return ArenaVotes(path).votes()


def test_students_bradley_terry_win_probability_from_votes(tmp_path):
    votes = _votes(tmp_path)
    ev = _evaluation({"base": ["x"], "dpo": ["y"], "ppo": ["z"], "grpo": ["w"]})
    info = students_evaluation(ev, votes)
    dpo = ev["models"]["dpo"]["summary"]["win_rate_vs_base"]["students"]
    ppo = ev["models"]["ppo"]["summary"]["win_rate_vs_base"]["students"]
    assert dpo["win_rate"] > 0.6 and ppo["win_rate"] < 0.4  # the direction of the votes
    assert (dpo["n"], dpo["wins"], dpo["ties"], dpo["losses"]) == (10, 8, 0, 2)
    assert (ppo["n"], ppo["wins"], ppo["ties"], ppo["losses"]) == (10, 2, 1, 7)
    assert dpo["n_votes"] == 24 and dpo["n_votes_model"] == 14
    ratings = bradley_terry(votes, ["base", "dpo", "grpo", "ppo"])  # the arena's own fit
    assert dpo["win_rate"] == pytest.approx(1 / (1 + 10 ** ((ratings["base"] - ratings["dpo"]) / 400)))
    for r in (dpo, ppo):
        assert 0 <= r["ci_low"] <= r["win_rate"] <= r["ci_high"] <= 1 and r["ci_low"] < r["ci_high"]
        assert "24 blind-arena votes" in r["description"] and "own prompts" in r["description"]
    assert "students" not in (ev["models"]["grpo"]["summary"].get("win_rate_vs_base") or {})  # no votes for GRPO
    assert info["votes"] == 24 and info["rated"] == ["dpo", "ppo"] and info["not_rated"] == ["grpo"]
    assert "not the evaluation prompts" in info["description"]


def test_students_absent_without_votes_and_only_for_class_models(tmp_path, monkeypatch):
    ev = _evaluation({"base": ["x"], "dpo": ["y"]})
    assert students_evaluation(ev, []) is None and "students" not in ev["evaluators"]
    assert "win_rate_vs_base" not in ev["models"]["dpo"]["summary"]
    manager = _manager(tmp_path, monkeypatch)
    votes = _votes(tmp_path)
    manager.workspaces.arena_votes.parent.mkdir(parents=True, exist_ok=True)
    manager.workspaces.arena_votes.write_text(json.dumps({"votes": votes}))
    ev = manager.add_judge_and_students(_evaluation({"base": ["x"], "dpo": ["y"], "ppo": ["z"]}))
    assert ev["models"]["dpo"]["summary"]["win_rate_vs_base"]["students"]["n"] == 10
    # a student's own DPO run is not the class model the votes were cast on: not rated
    own = {"dpo": SimpleNamespace(path=tmp_path / "students" / "ana" / "dpo")}
    ev = manager.add_judge_and_students(_evaluation({"base": ["x"], "dpo": ["y"]}), own)
    assert "students" not in (ev["models"]["dpo"]["summary"].get("win_rate_vs_base") or {})
    assert ev["evaluators"]["students"]["not_rated"] == ["dpo"]


# ----------------------------------------------------------------------------- the report shows both


def test_report_table_plot_caveats_and_tab_show_judge_and_students(server, tmp_path):
    from alignment.report import HEADLINE_COLUMNS, figures, write_reports
    from class7_1 import format_summary_table
    from ui.report_tab import _status_text

    ev = _evaluation({"base": ["meh one", "meh two"], "dpo": ["GOOD one", "GOOD two"], "ppo": ["x one", "x two"]})
    judge_evaluation(_judge(server), ev)
    students_evaluation(ev, _votes(tmp_path))
    report = write_reports(tmp_path / "report", {"model": {}}, {}, ev)
    rows = {r[0]: dict(zip(HEADLINE_COLUMNS, r)) for r in report["headline_table"]["rows"]}
    assert rows["dpo"]["win vs base: LLM judge [95% CI]"] == "100% [100%–100%]"
    assert rows["ppo"]["win vs base: LLM judge [95% CI]"] == "50% [50%–50%]"  # "tie" in both orders
    assert rows["dpo"]["win vs base: students [95% CI]"].startswith("7")  # 0.7x
    assert rows["base"]["win vs base: LLM judge [95% CI]"] == "-"
    judge_caveat = next(c for c in report["caveats"] if c.startswith("The LLM judge"))
    assert "fake-judge" in judge_caveat and "longer answers" in judge_caveat and "8 requests" in judge_caveat
    students_caveat = next(c for c in report["caveats"] if c.startswith("The students'"))
    assert "24 blind-arena votes" in students_caveat and "not the evaluation prompts" in students_caveat
    saved = json.loads((tmp_path / "report" / "evaluation_results.json").read_text())
    assert saved["evaluators"]["judge"]["requests"] == 8
    assert saved["models"]["dpo"]["summary"]["win_rate_vs_base"]["students"]["n"] == 10
    bars = {t.name for t in figures({}, ev)["win_rates"].data}
    assert {"LLM judge", "students"} <= bars
    table = format_summary_table(report)
    assert "win: LLM judge" in table and "win: students" in table and "fake-judge" in table
    shown = _status_text(json.loads((tmp_path / "report" / "alignment_comparison_report.json").read_text()))
    assert "**LLM judge**" in shown and "**students**" in shown and "24 blind-arena votes" in shown
    # a report written before these two columns existed is shown with the current columns
    from ui.report_tab import _view

    older = dict(report, headline_table={"columns": HEADLINE_COLUMNS[:-6] + HEADLINE_COLUMNS[-4:], "rows": [["x"]]})
    manager = SimpleNamespace(report_figures=lambda user: {}, report_dir=lambda user: tmp_path / "report")
    rows = _view(manager, older)[1]
    assert [r[0] for r in rows] == ["base", "dpo", "ppo"] and all(len(r) == len(HEADLINE_COLUMNS) for r in rows)
