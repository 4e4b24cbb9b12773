"""The Gradio app driven through gradio_client, in-process on the tiny model: annotate, train, compare, report."""

import json
import time

import pytest

from alignment.arena import bradley_terry, elo

SETTINGS = ["learning_rate", "max_steps", "batch_size", "beta", "clip_range", "group_size", "lora_r"]


@pytest.fixture(scope="module")
def client(served_app):
    from gradio_client import Client

    return Client(served_app[1], verbose=False)


def _settings(**kw):
    return [kw.get(name) for name in SETTINGS]


def _start(client, method, name="", class_model=False, **settings):
    """``/start_training``: method, preset, the seven settings, the name (without logins) and "class model"."""
    return client.predict(method, "quick", *_settings(**settings), name, class_model, api_name="/start_training")


def _wait(client, name="", timeout=180):
    """The caller's newest job once it has ended (``/training_status``'s ``current``)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        cur = client.predict(name, api_name="/training_status")["current"]
        if cur and cur["state"] not in ("queued", "running"):
            return cur
        time.sleep(0.3)
    raise AssertionError("training did not finish")


def test_annotate_through_the_api(served_app, client):
    manager, _ = served_app
    item = client.predict("ana", "pairwise", 4, api_name="/annotation_item")
    assert len(item["responses"]) == 2 and item["index"] == 0
    rec = client.predict({**item, "annotator": "ana", "choice": "B", "rationale": "more polite"},
                         api_name="/submit_annotation")
    stored = json.loads(manager.annotations.flush().read_text())["annotations"]
    assert stored[-1] == rec and rec["responses"] == item["responses"] and rec["rationale"] == "more polite"
    assert client.predict("ana", "pairwise", 4, api_name="/annotation_item")["index"] == 1  # next item
    assert client.predict("ben", "pairwise", 4, api_name="/annotation_item")["item_id"] == item["item_id"]
    stats = client.predict("ana", api_name="/annotation_stats")
    assert stats["counts"]["ana"] == 1 and stats["pairs"] >= 1


def test_train_compare_vote_report(served_app, client):
    manager, _ = served_app
    assert "reward model" in _start(client, "ppo", class_model=True)  # nothing to optimise yet: refused
    msg = _start(client, "reward", class_model=True, max_steps=3)  # the class models everybody compares
    assert "⚠️" not in msg and "Reward model" in msg
    # queued behind the reward model (nobody is refused because another job runs); a field the method does not
    # use is ignored
    msg = _start(client, "dpo", class_model=True, max_steps=2, clip_range=7)
    assert "⚠️" not in msg and "queue" in msg
    bad = _start(client, "dpo", max_steps=2.5)
    assert bad.startswith("⚠️") and "whole number" in bad
    bad = _start(client, "dpo", learning_rate=3)
    assert bad.startswith("⚠️") and "learning_rate" in bad
    jobs = client.predict("", api_name="/training_status")["jobs"]
    assert [(j["method"], j["owner"], j["class_model"]) for j in jobs] == [("dpo", "guest", True), ("reward", "guest", True)]
    st = _wait(client)
    assert st["method"] == "dpo" and st["state"] == "completed" and st["step"] == 2 and len(st["history"]) == 2
    assert st["run"].startswith("class/runs/dpo/") and any("job" in line for line in st["log_tail"])
    frames = manager.film_strip(job=st)  # the Train tab's film strip: before step 1 and after the last step
    assert [f["step"] for f in frames] == [0, 2] and all(a["proxy"] is not None for a in frames[-1]["answers"])
    assert manager.film_strip_chart("dpo", frames).data
    reward = client.predict("", api_name="/training_status")["jobs"][1]
    assert reward["state"] == "completed" and reward["step"] == 3

    answers = client.predict("Name a primary color.", 12, 0.7, 3, api_name="/compare")
    assert set(answers) == {"base", "dpo"}
    assert answers["base"]["kl_to_base"] == 0.0 and isinstance(answers["dpo"]["reward"], float)
    assert 1 <= answers["dpo"]["length_tokens"] <= 12
    again = client.predict("Name a primary color.", 12, 0.7, 3, api_name="/compare")
    assert again == answers  # identical decoding settings -> identical answers

    for voter in ("ana", "ben"):  # each vote for DPO, wherever the server placed it
        rnd = client.predict("Name a primary color.", voter, api_name="/arena_round")
        res = client.predict(rnd["round_id"], "A" if res_first(rnd, manager) == "dpo" else "B", voter,
                             api_name="/arena_vote")
    top = res["leaderboard"][0]
    assert top["model"] == "dpo" and top["wins"] == 2 and top["games"] == 2

    text, headline, files, *plots = client.predict("class", "class", "class", "class", api_name="/build_report")
    assert "Reward model held-out accuracy" in text
    assert [row[0] for row in headline["data"]] == ["base", "dpo"]
    names = sorted(f.rsplit("/", 1)[-1] for f in files)
    assert names == ["alignment_comparison_report.json", "evaluation_results.json", "final_summary.json"]
    report = json.loads((manager.output_dir / "class" / "alignment_comparison_report.json").read_text())
    assert set(report["evaluation"]["models"]) == {"base", "dpo"}
    assert report["methods"]["dpo"]["status"] == "completed"


def res_first(rnd, manager) -> str:
    """The model behind answer 1 of an open arena round (server-side state, as the test's referee)."""
    return manager.arena_rounds.models(rnd["round_id"])[0]


def test_failed_training_leaves_the_app_working(served_app, client, monkeypatch):
    """A training that raises (here: out of memory, simulated in the worker) fails alone: its message and traceback
    reach the page, its run directory says failed, the app keeps serving."""
    monkeypatch.setattr(served_app[0].dispatcher.backend, "entry", "tests.app_worker_targets:out_of_memory")
    _start(client, "dpo", name="carl", max_steps=2)
    st = _wait(client, name="carl")
    assert st["state"] == "failed" and "out of memory (simulated)" in st["error"]
    assert any("RuntimeError" in line for line in st["log_tail"])
    run_info = json.loads((served_app[0].output_dir / st["run"] / "run_info.json").read_text())
    assert run_info["status"] == "failed"
    item = client.predict("carl", "pairwise", 4, api_name="/annotation_item")  # still serving
    assert item["responses"]


def test_bradley_terry_and_elo_on_hand_made_votes():
    votes = [{"model_a": "x", "model_b": "y", "winner": "A"}] * 3 + [{"model_a": "y", "model_b": "x", "winner": "A"}]
    bt = bradley_terry(votes, ["x", "y"], prior=0.0)
    # MLE: p_x / (p_x + p_y) = 3/4 -> p_x / p_y = 3 -> rating gap 400 * log10(3)
    assert bt["x"] - bt["y"] == pytest.approx(400 * 0.47712, abs=0.1)
    r = elo([{"model_a": "x", "model_b": "y", "winner": "A"}], ["x", "y"])
    assert r == {"x": 1016.0, "y": 984.0}


def test_bad_dataset_file_names_the_line_and_keeps_the_old_data(served_app, client):
    manager, _ = served_app
    before = len(manager.dataset_rows())
    folder = manager.data_dirs[-1].root  # the Data tab reads only files inside the data folders
    bad = folder / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "oops"\n')
    status, *_ = client.predict("file path", str(bad), None, 0, api_name="/load_dataset")
    assert status.startswith("⚠️") and "line 2" in status and "previous dataset" in status
    assert len(manager.dataset_rows()) == before
    good = folder / "good.jsonl"
    good.write_text("".join(f'{{"prompt": "q{i}", "chosen": "yes {i}", "rejected": "no {i}"}}\n' for i in range(20))
                    + '{"prompt": "q", "chosen": "same", "rejected": "same"}\n')
    status, preview, *_ = client.predict("file path", str(good), None, 0, api_name="/load_dataset")
    assert "20 pairs" in status and "chosen and rejected are identical" in status and "row 20" in status
    assert len(manager.dataset_rows()) == 20
    manager.set_dataset("builtin")


def test_app_command_line_parses_logins():
    import app

    assert app.parse_auth("ana:pw1,ben:pw:2") == [("ana", "pw1"), ("ben", "pw:2")]  # a password may hold ':'
    assert app.parse_auth(None) is None
    with pytest.raises(SystemExit, match="user:password"):
        app.parse_auth("ana")
    args = app.parse_args(["--preset", "quick", "--port", "8080", "--auth", "t:s"])
    assert (args.preset, args.port, args.auth) == ("quick", 8080, "t:s")


def test_app_evaluates_the_prompt_file_it_is_given(tmp_path):
    import app
    from alignment.data.builtin import EVAL_PROMPTS_60_FILE

    args = app.parse_args(["--model", "tiny", "--output-dir", str(tmp_path), "--eval-prompts",
                           str(EVAL_PROMPTS_60_FILE)])
    manager, demo = app.build(args)
    assert len(manager.datasets["eval_prompts"]) == 60
    assert len(app.build(app.parse_args(["--model", "tiny", "--output-dir", str(tmp_path)]))[0]
               .datasets["eval_prompts"]) == 30


def test_a_generating_request_does_not_hold_up_other_students(served_app, client, monkeypatch):
    """One student's item with generated answers (here made to take 6 s) must not delay another student's
    dataset item, annotation, stats or status poll (with one worker per event it waited for the generation)."""
    import threading

    from gradio_client import Client

    manager, url = served_app
    real = manager.generate_candidates

    def slow(*args, **kwargs):
        manager.pool.run(time.sleep, 6)  # a generation holds the model's thread for 6 s
        return real(*args, **kwargs)

    monkeypatch.setattr(manager, "generate_candidates", slow)
    other = Client(url, verbose=False)
    job = other.submit("slow-student", "ranking", 3, api_name="/annotation_item")  # generates k - 2 answers
    threading.Event().wait(1.0)  # the generation is running
    t = time.perf_counter()
    item = client.predict("fast-student", "pairwise", 4, api_name="/annotation_item")
    client.predict({**item, "annotator": "fast-student", "choice": "A"}, api_name="/submit_annotation")
    client.predict("fast-student", api_name="/annotation_stats")
    client.predict("fast-student", api_name="/training_status")
    assert time.perf_counter() - t < 3.0
    assert not job.done()  # the slow one really was still generating
    assert len(job.result(timeout=120)["responses"]) == 3


def test_the_reward_flaw_reaches_the_job_and_is_validated(served_app, client):
    """The Train tab's planted-flaw choice (the reward-hacking exercise) becomes the reward job's config; a flaw
    that is not offered is refused before anything is queued."""
    manager, _ = served_app
    msg = client.predict("reward", "quick", *_settings(max_steps=1), "flawed", False, "length",
                         api_name="/start_training")
    assert "⚠️" not in msg
    job = client.predict("flawed", api_name="/training_status")["jobs"][0]
    assert manager.queue.get(job["id"])["spec"]["config"]["reward_flaw"] == "length"
    with pytest.raises(Exception, match="choices|length"):
        client.predict("reward", "quick", *_settings(max_steps=1), "flawed", False, "shorter", api_name="/start_training")
    manager.cancel_job("flawed", job["id"])
