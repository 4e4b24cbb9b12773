"""A student on the classroom network cannot break the server, rig the numbers or act as somebody else.

Each test drives the real app (tiny model) through gradio_client as an attacker would, with ``--auth`` where
identity matters. Each one failed on the code before the hardening: bounded settings (1e9, Infinity),
poisoned annotation records, a K=1000 ranking, markup in names, forged arena votes, undo as another student.
"""

import json
import re
import time

import pytest
from gradio_client import Client

from conftest import launch_app

SETTINGS = ["learning_rate", "max_steps", "batch_size", "beta", "clip_range", "group_size", "lora_r"]
USERS = [("ana", "pw-ana"), ("ben", "pw-ben"), ("teacher", "pw-teacher")]


def _settings(**kw):
    return [kw.get(name) for name in SETTINGS]


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory):
    from ui.login_guard import guarded_launch_kwargs

    out = tmp_path_factory.mktemp("auth_app")
    manager, demo, url = launch_app(out, launch_kwargs=guarded_launch_kwargs(USERS, failure_delay_s=0.0),
                                    teachers=["teacher"])
    yield manager, url
    demo.close()


@pytest.fixture(scope="module")
def ana(auth_app):
    return Client(auth_app[1], auth=USERS[0], verbose=False)


@pytest.fixture(scope="module")
def ben(auth_app):
    return Client(auth_app[1], auth=USERS[1], verbose=False)


@pytest.mark.parametrize("method, settings, message", [
    ("reward", dict(batch_size=1e9), "batch_size must be between 1 and 32"),
    ("dpo", dict(batch_size=1e9), "batch_size must be between 1 and 32"),
    ("grpo", dict(group_size=1e9), "num_generations must be between 2 and 16"),
    ("grpo", dict(batch_size=16, group_size=16), "at most 64"),
    ("dpo", dict(max_steps=1e9), "max_steps must be between 1 and 300"),
    ("dpo", dict(max_steps="Infinity"), "finite"),  # JSON has no inf: clients send these as strings
    ("dpo", dict(max_steps="1e999"), "finite"),
    ("dpo", dict(learning_rate="1e999"), "finite"),
    ("dpo", dict(learning_rate="NaN"), "finite"),
    ("dpo", dict(batch_size="eight"), "must be a number"),
    ("ppo", dict(beta=1e300), "kl_coef must be between"),
    ("dpo", dict(lora_r=1e6), "lora_r must be between 1 and 64"),
])
def test_unbounded_settings_are_refused_with_a_message(ana, auth_app, method, settings, message):
    manager = auth_app[0]
    reply = ana.predict(method, "quick", *_settings(**settings), "", False, api_name="/start_training")
    assert reply.startswith("⚠️") and message in reply, reply
    assert manager.queue.jobs(None) == []  # nothing queued


def test_settings_bounds_hold_for_every_method():
    from alignment.config import CONFIG_CLASSES, make_config

    for method, cls in CONFIG_CLASSES.items():
        make_config(method)  # the presets lie inside the bounds
        make_config(method, "quick")
        with pytest.raises(ValueError, match="whole number"):
            make_config(method, max_steps=2.0)
        with pytest.raises(ValueError, match="true or false"):
            make_config(method, bf16="yes")
        with pytest.raises(ValueError, match="between"):
            make_config(method, max_completion_length=10**6)


@pytest.mark.parametrize("patch, message", [
    ({"item_id": ["a", "list"]}, "item_id"),
    ({"responses": "ab"}, "responses"),
    ({"rationale": "x" * 1_000_000}, "rationale"),
    ({"choice": None, "ranking": [0.9, 1.5]}, "ranking"),
    ({"choice": None, "ranking": "01"}, "ranking"),
    ({"choice": None, "responses": [f"r{i}" for i in range(1000)], "ranking": list(range(1000))}, "at most 6"),
])
def test_poisoned_records_are_refused_with_their_message_and_stats_keep_working(ana, auth_app, patch, message):
    from gradio_client.exceptions import AppError

    item = ana.predict("ana", "pairwise", 4, api_name="/annotation_item")
    with pytest.raises(AppError, match=message):
        ana.predict({**item, "choice": "A", **patch}, api_name="/submit_annotation")
    stats = ana.predict("", api_name="/annotation_stats")  # still answers for everybody
    assert stats["total"] == auth_app[0].annotations.total()


def test_markup_in_user_strings_is_escaped():
    """Names, prompts and rationales reach other students' pages only as text."""
    from ui.annotate_tab import _stats
    from ui.common import error_text, md_escape

    evil = "<a href=http://evil.example>Click</a> [x](http://evil.example) ![i](http://evil.example/i.png) <iframe"
    out = md_escape(evil)
    unescaped_bracket = re.compile(r"(?<!\\)[\[\]]")
    assert "<a" not in out and "<iframe" not in out and not unescaped_bracket.search(out) and "http://" not in out
    assert "&lt;a href" in out and r"\[x\]" in out
    assert "<a" not in error_text(ValueError(evil))

    class FakeManager:
        def annotation_summary(self, annotator):
            ag = {"pairwise": {"shared_items": 2, "alpha": 0.5,
                               "kappa": [{"annotators": [evil, "ben"], "n_items": 2, "kappa": 0.5}]},
                  "ranking": {"shared_items": 0, "alpha": None}}
            return {"total": 2, "counts": {evil: 1, "ben": 1}, "history": [], "agreement": ag, "pairs": 1}

    _, _, agreement_md, _ = _stats(FakeManager(), "ben")
    assert "<a" not in agreement_md and "<iframe" not in agreement_md and not unescaped_bracket.search(agreement_md)


def test_logged_in_student_annotates_and_undoes_only_as_themself(auth_app, ana, ben):
    from gradio_client.exceptions import AppError

    manager = auth_app[0]
    item = ana.predict("", "pairwise", 4, api_name="/annotation_item")
    mine = [ana.predict({**item, "choice": c}, api_name="/submit_annotation") for c in ("A", "B", "tie")]
    assert all(r["annotator"] == "ana" for r in mine)  # the login, not a typed name
    with pytest.raises(AppError, match="logged in as ben"):
        ben.predict({**item, "annotator": "ana", "choice": "B"}, api_name="/submit_annotation")
    assert ben.predict("ana", api_name="/undo_annotation") == {"removed": None}  # ben's own (none), not ana's
    assert len(manager.annotations.history("ana")) >= 3
    removed = ana.predict("ben", api_name="/undo_annotation")["removed"]  # the typed name is ignored
    assert removed["id"] == mine[-1]["id"] and removed["annotator"] == "ana"


def test_arena_votes_only_on_pairs_the_server_handed_out_once(auth_app, ana, ben):
    from gradio_client.exceptions import AppError

    manager = auth_app[0]
    manager.train_method("dpo", max_steps=1)  # a class model: the arena compares the class's models
    assert "dpo" in manager.trained_policies()

    with pytest.raises(AppError, match="Unknown or already used"):  # forged: models named by the client
        ana.predict("forged-round", "A", "", api_name="/arena_vote")
    rnd = ana.predict("Name a colour.", "", api_name="/arena_round")
    assert set(rnd) == {"round_id", "prompt", "answers"} and len(rnd["answers"]) == 2  # models stay hidden
    with pytest.raises(AppError, match="Unknown or already used"):  # a round handed to somebody else
        ben.predict(rnd["round_id"], "B", "", api_name="/arena_vote")
    res = ana.predict(rnd["round_id"], "A", "", api_name="/arena_vote")
    assert sorted(res["models"]) == ["base", "dpo"]
    with pytest.raises(AppError, match="Unknown or already used"):  # once
        ana.predict(rnd["round_id"], "A", "", api_name="/arena_vote")
    votes = json.loads((manager.output_dir / "arena_votes.json").read_text())["votes"]
    assert len(votes) == 1 and votes[0]["voter"] == "ana"
    assert {r["model"] for r in res["leaderboard"]} == {"base", "dpo"}


def test_dr_grpo_drops_the_std_scaling_too():
    """Liu et al. 2025 (Dr. GRPO) remove both the length normaliser and the group-std scaling; loss_type="dr_grpo"
    with the std scaling on was half of it."""
    from alignment.config import make_config

    assert make_config("grpo").scale_rewards is True
    assert make_config("grpo", loss_type="dr_grpo").scale_rewards is False
    with pytest.raises(ValueError, match="drops the group-std scaling"):
        make_config("grpo", loss_type="dr_grpo", scale_rewards=True)


def test_only_the_teacher_changes_the_class_dataset(auth_app, ana):
    """A student's dataset choice applies to their own trainings; the teacher's is the class's."""
    manager = auth_app[0]
    before = manager.dataset_rows()
    status, *_ = ana.predict("built-in", "", None, 17, api_name="/load_dataset")
    assert "your own" in status and "17 pairs" in status
    assert manager.dataset_rows() == before and len(manager.dataset_rows("ana")) == 17  # the class's is unchanged
    teacher = Client(auth_app[1], auth=USERS[2], verbose=False)
    status, *_ = teacher.predict("built-in", "", None, 20, api_name="/load_dataset")
    assert "20 pairs" in status and "class dataset" in status and len(manager.dataset_rows()) == 20
    assert len(manager.dataset_rows("ana")) == 17
    teacher.predict("built-in", "", None, 0, api_name="/load_dataset")


def test_teachers_come_from_the_logins():
    import app

    auth = [("teacher", "a"), ("ana", "b")]
    assert app.parse_teachers(None, auth) == ["teacher"]  # the first login by default
    assert app.parse_teachers("ana, teacher", auth) == ["ana", "teacher"]
    assert app.parse_teachers("ana", None) == []  # no logins: no identities, everybody has the controls
    with pytest.raises(SystemExit, match="no --auth login named bob"):
        app.parse_teachers("bob", auth)


def test_only_the_owner_or_the_teacher_stops_a_training(auth_app, ana, ben):
    manager = auth_app[0]
    reply = ana.predict("reward", "quick", *_settings(max_steps=300), "", False, api_name="/start_training")
    assert "⚠️" not in reply
    job = ana.predict("", api_name="/training_status")["current"]
    assert job["owner"] == "ana"
    try:
        refused = ben.predict("", api_name="/stop_training")  # his own: he has none
        assert "Nothing of yours" in refused
        refused = ben.predict("", job["id"], api_name="/cancel_job")
        assert "ana started this training" in refused and not manager.queue.get(job["id"])["stop_requested"]
        refused = ana.predict("dpo", "quick", *_settings(max_steps=1), "", True, api_name="/start_training")
        assert "Only the teacher can train a class model" in refused
        teacher = Client(auth_app[1], auth=USERS[2], verbose=False)
        assert "⚠️" not in teacher.predict("", job["id"], api_name="/cancel_job")
        deadline = time.time() + 30
        while manager.queue.get(job["id"])["state"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.1)
        assert manager.queue.get(job["id"])["state"] in ("stopped", "cancelled")
        assert teacher.predict(api_name="/queue_status")["counts"]["queued"] == 0
        assert "error" in ben.predict(api_name="/queue_status")  # teachers only
    finally:
        for j in manager.queue.jobs(None):
            manager.queue.cancel(j["id"])


def test_no_student_reads_another_students_files_by_path(auth_app, ana, ben):
    """Gradio serves every file under ``launch(allowed_paths=...)`` to anyone logged in; the app names none, so
    ben cannot fetch ana's report (or anything in the output folder) with ``/gradio_api/file=<path>``. What an event
    hands out is a copy in a folder of its own (``ui.common.downloadable``), cached by Gradio under a hashed name."""
    import httpx

    from ui.common import DOWNLOAD_DIR

    manager, url = auth_app
    secret = manager.report_dir("ana") / "final_summary.json"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text('{"ana": "private"}')
    for path in (secret, manager.output_dir / "collected_annotations.json"):
        if path.is_file():
            reply = httpx.get(f"{url}gradio_api/file={path.resolve()}", cookies=ben.cookies)
            assert reply.status_code == 403, (path, reply.status_code)
    # ana's own download still works: the event returns copies with their names, outside the output folder
    export, _ = ana.predict(api_name="/export_annotations")
    assert export.endswith("/annotations_trl.jsonl")
    copy = max(DOWNLOAD_DIR.rglob("annotations_trl.jsonl"), key=lambda p: p.stat().st_mtime)
    assert copy.read_bytes() == open(export, "rb").read()


def test_download_copies_keep_their_names_and_old_copies_go(tmp_path, monkeypatch):
    import os

    import ui.common as common

    monkeypatch.setattr(common, "DOWNLOAD_DIR", tmp_path / "downloads")
    src = tmp_path / "final_summary.json"
    src.write_text('{"x": 1}')
    first = common.downloadable([src])
    stale = common.DOWNLOAD_DIR / "stale"
    stale.mkdir()
    os.utime(stale, (0, 0))  # older than DOWNLOAD_TTL_S
    second = common.downloadable([src])
    assert [p.rsplit("/", 1)[1] for p in first + second] == ["final_summary.json"] * 2
    assert first != second and all(open(p).read() == '{"x": 1}' for p in first + second)  # one folder per call
    assert not stale.exists() and os.path.exists(first[0])  # only copies older than the TTL are removed
