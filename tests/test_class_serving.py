"""A class at once (issue 11): two logged-in students train at the same time through the app's API, each in their
own workspace, and each compares against their own run; the teacher sees and controls the whole queue."""

import json
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client

from conftest import launch_app

SETTINGS = ["learning_rate", "max_steps", "batch_size", "beta", "clip_range", "group_size", "lora_r"]
USERS = [("ana", "pw-ana"), ("ben", "pw-ben"), ("teacher", "pw-teacher")]


def _start(client, method, class_model=False, **kw):
    return client.predict(method, "quick", *[kw.get(n) for n in SETTINGS], "", class_model, api_name="/start_training")


def _wait_all(client, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = client.predict("", api_name="/training_status")["jobs"]
        if jobs and all(j["state"] not in ("queued", "running") for j in jobs):
            return jobs
        time.sleep(0.3)
    raise AssertionError(f"jobs did not finish: {jobs}")


@pytest.fixture(scope="module")
def class_app(tmp_path_factory):
    from ui.login_guard import guarded_launch_kwargs

    out = tmp_path_factory.mktemp("class_app")
    manager, demo, url = launch_app(out, launch_kwargs=guarded_launch_kwargs(USERS, failure_delay_s=0.0),
                                    teachers=["teacher"])
    yield manager, url
    demo.close()
    manager.close()


def test_two_students_train_at_once_and_each_compares_their_own_run(class_app):
    manager, url = class_app
    ana, ben = (Client(url, auth=u, verbose=False) for u in USERS[:2])
    replies = {}

    def start(name, client):  # both press Start within the same moment
        replies[name] = [_start(client, "reward", max_steps=1), _start(client, "dpo", max_steps=2)]

    threads = [threading.Thread(target=start, args=(n, c)) for n, c in (("ana", ana), ("ben", ben))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not any("⚠️" in r for rs in replies.values() for r in rs), replies  # nobody refused
    runs = {}
    for name, client in (("ana", ana), ("ben", ben)):
        jobs = _wait_all(client)
        assert [(j["method"], j["state"], j["owner"]) for j in jobs] == [("dpo", "completed", name),
                                                                         ("reward", "completed", name)]
        runs[name] = manager.output_dir / jobs[0]["run"]
        assert runs[name].parent == manager.output_dir / "students" / name / "runs" / "dpo"
        assert (runs[name] / "adapter" / "adapter_config.json").is_file()
        config = json.loads((runs[name] / "config.json").read_text())
        assert config["owner"] == name
    assert runs["ana"] != runs["ben"]
    # fair order: both students' first jobs (the reward models) started before either's second one
    started = sorted(manager.queue.jobs(None), key=lambda j: j["started_at"])
    assert {(j["owner"], j["method"]) for j in started[:2]} == {("ana", "reward"), ("ben", "reward")}
    assert manager.class_runs() == {}  # no student's run became a class model

    # Compare: a student picks their own run by its key; another student's key is refused
    status = ana.predict("", api_name="/training_status")
    key = f"students/ana/dpo/{runs['ana'].name}"  # scope/method/run id
    assert key == next(r["key"] for r in manager.list_runs("ana") if r["method"] == "dpo")
    answers = ana.predict("Name a colour.", 12, 0.7, 3, {"dpo": key}, "", api_name="/compare")
    assert set(answers) == {"base", "dpo"}
    assert status["current"]["run"].endswith(runs["ana"].name)
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Unknown run"):
        ben.predict("Name a colour.", 12, 0.7, 3, {"dpo": key}, "", api_name="/compare")
    with pytest.raises(AppError, match="runs must be an object"):
        ben.predict("Name a colour.", 12, 0.7, 3, [key], "", api_name="/compare")
    ben_key = next(r["key"] for r in manager.list_runs("ben") if r["method"] == "dpo")
    theirs = ben.predict("Name a colour.", 12, 0.7, 3, {"dpo": ben_key}, "", api_name="/compare")
    assert theirs["base"] == answers["base"]  # same base, same decoding
    assert set(theirs) == {"base", "dpo"}


def test_the_teacher_view_and_class_models(class_app):
    manager, url = class_app
    ana, teacher = Client(url, auth=USERS[0], verbose=False), Client(url, auth=USERS[2], verbose=False)
    assert "error" in ana.predict(api_name="/queue_status")
    view = teacher.predict(api_name="/queue_status")
    assert {"ana", "ben"} <= set(view["students"]) and view["workers"] == 1
    assert "Only the teacher" in _start(ana, "dpo", class_model=True, max_steps=1)
    assert "⚠️" not in _start(teacher, "dpo", class_model=True, max_steps=1)
    jobs = _wait_all(teacher)
    assert jobs[0]["state"] == "completed" and jobs[0]["run"].startswith("class/runs/dpo/")
    assert list(manager.class_runs()) == ["dpo"]
    # everybody's Compare now shows the class DPO by default
    assert set(ana.predict("Name a colour.", 8, 0.7, 3, None, "", api_name="/compare")) == {"base", "dpo"}
    assert Path(manager.output_dir / jobs[0]["run"]).is_dir()


def test_workspace_names_and_run_keys_stay_inside_the_output_folder(tmp_path):
    from alignment.serving.workspaces import Workspaces, safe_name

    ws = Workspaces(tmp_path)
    for hostile in ("../x", "a/b", "..", "/etc", "a\x00b", ".hidden", "é" * 100):
        folder = ws.dir(hostile)
        assert folder.resolve().parent == (tmp_path / "students").resolve(), hostile
        assert "/" not in safe_name(hostile) and not safe_name(hostile).startswith(".")
    assert safe_name("a/b") != safe_name("a_b")  # two names never share a workspace
    assert safe_name("ana") == "ana"
    run = ws.new_run("ana", "dpo")
    run.path.mkdir(parents=True)
    assert ws.resolve(run.key, "ana").path == run.path
    assert ws.resolve(run.key, "teach", is_teacher=True).path == run.path
    refused = [run.key.replace("ana", "ben"),  # not there
               f"students/../class/dpo/{run.run_id}", f"students/ana/../../dpo/{run.run_id}",
               "class/dpo/../../students", f"students/ana/reward/{run.run_id}", "x" * 500, None, 3]
    for key in refused:
        with pytest.raises(ValueError, match="Unknown run"):
            ws.resolve(key, "ana")
    with pytest.raises(ValueError, match="Unknown run"):  # another student's run: the same message
        ws.resolve(run.key, "ben")


def test_a_worker_trains_on_the_model_the_server_resolved(monkeypatch):
    """The job's spec carries the server's resolved model source: a worker that resolved the name again could
    load the hub's weights where the server, offline, serves the embedded GGUF, and its adapter would not fit."""
    import alignment.session
    from alignment.session import Session

    spec = Session("tiny", preset="quick").to_dict()
    assert spec["source"]["kind"] == "tiny"

    def no_resolving(name):
        raise AssertionError("the worker resolved the model again")

    monkeypatch.setattr(alignment.session, "resolve_model", no_resolving)
    worker = Session(**spec)
    worker.setup_model()
    assert worker.source.path == spec["source"]["path"] and worker.tokenizer is not None
