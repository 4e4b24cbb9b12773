"""End to end with the tiny model: the manager API and the CLI write all three report files, strict JSON."""

import json
import re
from pathlib import Path

import pytest

import class7_1
from class7_1 import AlignmentComparisonManager, parse_overrides

TINY = {"all": {"max_steps": 2, "max_completion_length": 8, "max_prompt_length": 64}}


def _strict_load(path):
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path.name} holds {c}"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    manager = AlignmentComparisonManager("tiny", output_dir=out, overrides=TINY, max_pairs=40, max_eval_prompts=10)
    datasets = manager.load_preference_datasets()
    model_info = manager.setup_models()
    results = manager.demonstrate_alignment_methods(model_info, datasets, progress=False)
    evaluation = manager.evaluate_alignment_methods(results, progress=False)
    report = manager.generate_report(results, evaluation)
    return out, manager, report


def test_report_files_and_schema(finished_run):
    out, manager, report = finished_run
    rep = _strict_load(out / "class" / "alignment_comparison_report.json")  # the class models' report
    ev = _strict_load(out / "class" / "evaluation_results.json")
    summary = _strict_load(out / "class" / "final_summary.json")
    assert set(rep["methods"]) == {"reward", "dpo", "ppo", "grpo"}
    assert all(m["status"] == "completed" and m["train_time_s"] > 0 for m in rep["methods"].values())
    assert 0 <= rep["methods"]["reward"]["heldout"]["accuracy"] <= 1
    assert rep["setup"]["dataset"]["statistics"]["train"]["pairs"] == len(manager.datasets["train"])
    assert rep["setup"]["model"]["source"] == "tiny"
    assert rep["recommendations"] and all(isinstance(r, str) for r in rep["recommendations"])
    assert set(ev["models"]) == {"base", "dpo", "ppo", "grpo"}
    assert ev["eval_prompts_in_training"] == {"count": 0, "of": 10, "prompts": []}  # built-in: disjoint
    for name, model in ev["models"].items():
        assert len(model["samples"]) == 10
        s = model["summary"]
        assert set(s) >= {"mean_reward", "reward_distribution", "mean_length_tokens", "kl_to_base", "per_category_mean_reward"}
        if name != "base":
            wr = s["win_rate_vs_base"]["proxy_rm"]  # keyed by evaluator
            assert 0 <= wr["ci_low"] <= wr["win_rate"] <= wr["ci_high"] <= 1
    assert ev["models"]["base"]["summary"]["kl_to_base"] == 0.0
    assert set(summary["headline"]) == {"base", "dpo", "ppo", "grpo"} and summary["what_was_learned"]
    for plot in rep["plots"]:
        assert (out / "class" / "plots").exists() and plot.endswith(".html")


def test_the_gold_reward_model_learns_from_the_other_half(finished_run):
    """Gao et al. 2023: the evaluation's gold reward model was trained on pairs the proxy (the one PPO and GRPO
    optimised) never saw, with another seed, and nobody trained against it."""
    from alignment.registry import split_for_gold

    out, manager, report = finished_run
    rows = manager.datasets["train"]
    proxy, gold = split_for_gold(rows, 42)
    key = lambda r: (str(r["prompt"]), r["chosen"], r["rejected"])  # noqa: E731
    assert not {key(r) for r in proxy} & {key(r) for r in gold} and len(proxy) + len(gold) == len(rows)
    info = json.loads((manager_run(out, "reward") / "run_info.json").read_text())
    assert info["train_pairs"] == len(proxy) and info["gold"]["train_pairs"] == len(gold)
    assert (manager_run(out, "reward") / "gold" / "adapter" / "adapter_config.json").is_file()
    ev = _strict_load(out / "class" / "evaluation_results.json")
    assert ev["evaluators"]["gold_rm"]["trained"] == [] and set(ev["evaluators"]["proxy_rm"]["trained"]) == {"ppo", "grpo"}
    # both reward models score in the precision their reward run trained in
    precision = "bf16 autocast" if manager.session.configs["reward"].bf16 else "fp32"
    assert ev["evaluators"]["proxy_rm"]["precision"] == ev["evaluators"]["gold_rm"]["precision"] == precision
    for name in ("dpo", "ppo", "grpo"):
        wr = ev["models"][name]["summary"]["win_rate_vs_base"]
        assert {"proxy_rm", "gold_rm", "rules"} <= set(wr)
    golds = [s["gold_reward"] for s in ev["models"]["base"]["samples"]]
    proxies = [s["reward"] for s in ev["models"]["base"]["samples"]]
    assert golds != proxies  # two different judges


def manager_run(out, method):
    (run,) = (out / "class" / "runs" / method).iterdir()
    return run


def test_run_dirs_are_self_describing(finished_run):
    out, _, _ = finished_run
    for method in ("reward", "dpo", "ppo", "grpo"):
        (run,) = (out / "class" / "runs" / method).iterdir()  # one run, named by its start time and a suffix
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", run.name)
        config = json.loads((run / "config.json").read_text())
        assert config["method"] == method and config["config"]["max_steps"] == 2
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
        assert json.loads((run / "run_info.json").read_text())["status"] == "completed"
    assert json.loads((manager_run(out, "dpo") / "samples.json").read_text())[0]["prompt"]


def test_film_strips_and_gold_scores_watch_every_policy(finished_run):
    """Every policy run answers the film-strip prompts before its first step and at its last (2 steps < 10), scored
    by the proxy and gold reward models and the rules; PPO and GRPO log the gold score of every rollout; the report
    carries the curves and draws them."""
    out, _, report = finished_run
    first = {}
    for method in ("dpo", "ppo", "grpo"):
        frames = [json.loads(line) for line in (manager_run(out, method) / "film_strip.jsonl").read_text().splitlines()]
        first[method] = [(a["response"], a["proxy"], a["kl"]) for a in frames[0]["answers"]]
        assert [f["step"] for f in frames] == [0, 2]
        assert len(frames[0]["answers"]) == 8
        assert all(a["proxy"] is not None and a["gold"] is not None and a["rules"] is not None
                   for f in frames for a in f["answers"])
        assert [p["step"] for p in report["overoptimization"]["curves"][method]] == [0, 2]
    # frame 0 is the untrained policy, sampled and scored the same way by every trainer
    assert first["dpo"] == first["ppo"] == first["grpo"]
    for method in ("ppo", "grpo"):
        metrics = [json.loads(line) for line in (manager_run(out, method) / "metrics.jsonl").read_text().splitlines()]
        assert all("gold/scores" in m and "objective/raw_scores" in m for m in metrics)
    names = {p.rsplit("/", 1)[-1] for p in report["plots"]}
    assert {"overoptimization.html", "reward_vs_kl.html"} <= names


def test_same_seed_same_base_generations(finished_run):
    out, manager, _ = finished_run
    again = manager.evaluate_alignment_methods(progress=False)
    first = json.loads((out / "class" / "evaluation_results.json").read_text())
    assert [s["response"] for s in again["models"]["base"]["samples"]] == \
           [s["response"] for s in first["models"]["base"]["samples"]]


def test_cli_end_to_end(tmp_path, capsys):
    code = class7_1.main(["--model", "tiny", "--steps", "1", "--max-pairs", "30", "--max-eval-prompts", "4",
                          "--methods", "reward", "dpo", "--output-dir", str(tmp_path), "--eval-samples", "2",
                          "--reward-flaw", "length",
                          "--set", "all.max_completion_length=8", "all.max_prompt_length=64"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Reward model held-out accuracy" in printed and "dpo" in printed
    assert {p.name for p in (tmp_path / "class").iterdir()} >= {"alignment_comparison_report.json",
                                                                "evaluation_results.json", "final_summary.json"}
    ev = json.loads((tmp_path / "class" / "evaluation_results.json").read_text())
    assert ev["samples_per_prompt"] == 2 and len(ev["models"]["dpo"]["samples"]) == 2 * 4  # 2 answers x 4 prompts
    wr = ev["models"]["dpo"]["summary"]["win_rate_vs_base"]["proxy_rm"]
    assert wr["n_prompts"] == 4 and wr["n_samples"] == 2
    # the planted flaw: the proxy reward model learnt from relabelled pairs, and the report says so
    report = json.loads((tmp_path / "class" / "alignment_comparison_report.json").read_text())
    flaw = report["methods"]["reward"]["reward_flaw"]
    assert flaw["flaw"] == "length" and 0 < flaw["relabelled_pairs"] <= flaw["train_pairs"]
    assert any("planted flaw" in c for c in report["caveats"]) and "caveat: The proxy reward model was trained" in printed


def test_cli_rejects_bad_settings(capsys):
    assert class7_1.main(["--model", "tiny", "--set", "grpo.num_generations=1"]) == 2
    assert "num_generations" in capsys.readouterr().err
    assert parse_overrides(["dpo.beta=0.2", "ppo.kl_controller=adaptive"]) == {"dpo": {"beta": 0.2}, "ppo": {"kl_controller": "adaptive"}}
    with pytest.raises(SystemExit):
        parse_overrides(["beta=0.2"])


def test_failed_method_is_recorded_and_others_run(tmp_path, monkeypatch):
    import alignment.trainers as trainers

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(trainers, "train_dpo", boom)
    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path, overrides=TINY, max_pairs=30, max_eval_prompts=4)
    results = manager.demonstrate_alignment_methods(methods=("reward", "dpo", "grpo"), progress=False)
    assert results["dpo"]["status"] == "failed" and "simulated failure" in results["dpo"]["error"]
    assert "simulated failure" in (manager_run(tmp_path, "dpo") / "error.log").read_text()
    assert results["grpo"]["status"] == "completed"


def test_cli_sweep_trains_one_run_per_value_and_evaluates_them_all(tmp_path, capsys):
    """``--sweep dpo.beta=0.05,0.1``: two more DPO runs with those betas, evaluated next to base and the preset's DPO
    (one point each on the reward-vs-KL frontier); the newest class DPO run stays the preset's."""
    code = class7_1.main(["--model", "tiny", "--steps", "1", "--max-pairs", "30", "--max-eval-prompts", "3",
                          "--methods", "reward", "dpo", "--output-dir", str(tmp_path), "--sweep", "dpo.beta=0.05,0.1",
                          "--set", "all.max_completion_length=6", "all.max_prompt_length=64", "all.film_strip_every=0"])
    assert code == 0
    ev = json.loads((tmp_path / "class" / "evaluation_results.json").read_text())
    assert list(ev["models"]) == ["base", "dpo", "dpo(beta=0.05)", "dpo(beta=0.1)"]
    report = json.loads((tmp_path / "class" / "alignment_comparison_report.json").read_text())
    configs = report["setup"]["configs"]
    assert configs["dpo"]["beta"] == 0.3 and configs["dpo(beta=0.05)"]["beta"] == 0.05 and configs["dpo(beta=0.1)"]["beta"] == 0.1
    runs = {n: json.loads((Path(d) / "config.json").read_text())["config"]["beta"] for n, d in report["setup"]["runs"].items()
            if n != "reward"}
    assert runs == {"dpo": 0.3, "dpo(beta=0.05)": 0.05, "dpo(beta=0.1)": 0.1}  # each model is the run it names
    newest = sorted((tmp_path / "class" / "runs" / "dpo").iterdir())[-1]
    assert json.loads((newest / "config.json").read_text())["config"]["beta"] == 0.3
    assert [r[0] for r in report["headline_table"]["rows"]] == list(ev["models"])
    assert "dpo(beta=0.1)" in capsys.readouterr().out


def test_cli_sweep_refuses_bad_values_before_training(tmp_path, capsys):
    assert class7_1.main(["--model", "tiny", "--output-dir", str(tmp_path), "--sweep", "dpo.beta=0.1,-1"]) == 2
    assert "beta" in capsys.readouterr().err and not (tmp_path / "class").exists()
    with pytest.raises(SystemExit, match="policy method"):
        class7_1.main(["--model", "tiny", "--sweep", "reward.learning_rate=0.1,0.2"])


def test_the_reward_model_may_have_its_own_length_budget(tmp_path, monkeypatch):
    """``--set reward.max_completion_length=128``: the reward model learns from answers cut at 128 tokens, not at the
    policies' 32 (HH-RLHF answers are longer); the policies keep the shared budget; its scorer reads that budget."""
    import alignment.trainers as trainers
    from alignment.pipeline import load_reward_scorer

    seen = {}
    real = trainers.train_reward_model

    def spy(cfg, source, tokenizer, train_rows, eval_rows, ctx, model=None):
        seen.setdefault("rows", train_rows)
        return real(cfg, source, tokenizer, train_rows, eval_rows, ctx, model)

    monkeypatch.setattr(trainers, "train_reward_model", spy)
    budget = {"max_steps": 1, "max_prompt_length": 64, "max_completion_length": 8}
    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path, max_pairs=60,
                                         overrides={"all": budget, "reward": {"max_completion_length": 128,
                                                                              "gold_model": False}})
    manager.load_preference_datasets()
    result = manager.train_method("reward")
    tok = manager.tokenizer
    longest = max(len(tok(r[k], add_special_tokens=False)["input_ids"]) for r in seen["rows"] for k in ("chosen", "rejected"))
    shared = max(len(tok(r[k], add_special_tokens=False)["input_ids"]) for r in manager.datasets["train"]
                 for k in ("chosen", "rejected"))
    assert shared <= 8 < longest <= 128  # the policies' pairs are cut at 8 tokens, the reward model's are not
    scorer = load_reward_scorer(manager.session, Path(result["adapter"]))
    assert scorer.max_length == 64 + 128 + 16
    assert scorer.bf16 is manager.session.configs["reward"].bf16 is True  # scores as it was trained: bf16 autocast


def test_a_report_of_the_same_models_reuses_their_evaluation(finished_run, monkeypatch):
    """30 students building the class report: one evaluation, not 30 on the model thread. Another pick of runs,
    or another number of answers per prompt, is evaluated; what a caller adds to its copy stays its own."""
    import alignment.pipeline as pipeline
    from alignment.serving.evaluations import EvaluationCache

    out, manager, _ = finished_run
    calls, real = [], pipeline.evaluate_runs

    def spy(*args, **kwargs):
        calls.append(sorted(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate_runs", spy)
    monkeypatch.setattr(manager, "evaluations", EvaluationCache())
    steps = []
    first = manager.evaluate_alignment_methods(progress=False, judge_and_votes=False)
    first["models"]["dpo"]["summary"]["win_rate_vs_base"]["judge"] = {"win_rate": 1.0}  # e.g. the judge, added
    second = manager.evaluate_alignment_methods(progress=lambda f, d: steps.append((f, d)), judge_and_votes=False)
    assert len(calls) == 1 and "judge" not in second["models"]["dpo"]["summary"]["win_rate_vs_base"]
    assert second["models"]["ppo"]["samples"] == first["models"]["ppo"]["samples"]
    assert steps[-1][0] == 1.0 and "reused" in steps[-1][1]
    without_ppo = {m: r for m, r in manager.class_runs().items() if m != "ppo"}
    manager.evaluate_alignment_methods(progress=False, runs=without_ppo, judge_and_votes=False)
    monkeypatch.setattr(manager, "eval_samples", 2)
    manager.evaluate_alignment_methods(progress=False, judge_and_votes=False)
    assert calls == [["dpo", "grpo", "ppo"], ["dpo", "grpo"], ["dpo", "grpo", "ppo"]]


def test_the_evaluation_cache_keeps_the_newest_and_copies():
    from alignment.serving.evaluations import EvaluationCache, evaluation_key

    cache = EvaluationCache(max_entries=2)
    keys = [evaluation_key(runs={"dpo": f"class/dpo/{i}"}, samples=4) for i in range(3)]
    assert len(set(keys)) == 3 and keys[0] == evaluation_key(samples=4, runs={"dpo": "class/dpo/0"})
    for i, k in enumerate(keys[:2]):
        cache.put(k, {"i": i, "models": {}})
    cache.get(keys[0])["models"]["x"] = 1  # a caller's change stays in its copy
    assert cache.get(keys[0]) == {"i": 0, "models": {}}  # and getting it makes it the newest
    cache.put(keys[2], {"i": 2})
    assert cache.get(keys[1]) is None and cache.get(keys[0])["i"] == 0 and cache.get(keys[2])["i"] == 2
    with pytest.raises(ValueError, match="max_entries"):
        EvaluationCache(0)
