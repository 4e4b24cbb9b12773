"""Annotation storage: validation, undo, export/load-back, agreement statistics, concurrency, crash safety."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alignment.annotations import AnnotationStore, agreement, item_id
from alignment.data import load_preference_dataset

ROOT = Path(__file__).resolve().parents[1]


def _pair(annotator, choice, prompt="Say hi.", responses=("Hi!", "Go away.")):
    return {"annotator": annotator, "prompt": prompt, "responses": list(responses), "choice": choice}


def test_add_stamps_and_persists(tmp_path):
    store = AnnotationStore(tmp_path / "collected_annotations.json")
    rec = store.add({**_pair("ana", "A"), "rationale": "polite"})
    data = json.loads((tmp_path / "collected_annotations.json").read_text())
    assert data["annotations"] == [rec]
    assert rec["annotator"] == "ana" and rec["choice"] == "A" and rec["mode"] == "pairwise"
    assert rec["item_id"] == item_id("Say hi.", ["Hi!", "Go away."]) and len(rec["id"]) == 32 and rec["timestamp"]


@pytest.mark.parametrize("bad, message", [
    ({"annotator": "", "prompt": "p", "responses": ["a", "b"], "choice": "A"}, "name"),
    ({"annotator": "x", "prompt": "", "responses": ["a", "b"], "choice": "A"}, "prompt"),
    ({"annotator": "x", "prompt": "p", "responses": ["a"], "choice": "A"}, "two responses"),
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b"], "choice": "C"}, "Choice"),
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 0, 1]}, "exactly once"),
])
def test_bad_records_are_refused_and_nothing_is_written(tmp_path, bad, message):
    store = AnnotationStore(tmp_path / "a.json")
    store.add(_pair("ana", "A"))
    with pytest.raises(ValueError, match=message):
        store.add(bad)
    assert len(store.records()) == 1


def test_corrupt_file_is_never_overwritten(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"annotations": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        AnnotationStore(path).add(_pair("ana", "A"))
    assert path.read_text() == '{"annotations": ['


def test_undo_removes_only_own_last(tmp_path):
    store = AnnotationStore(tmp_path / "a.json")
    first = store.add(_pair("ana", "A"))
    store.add(_pair("ben", "B"))
    second = store.add(_pair("ana", "tie"))
    assert store.undo_last("ana")["id"] == second["id"]
    assert [r["id"] for r in store.history("ana")] == [first["id"]]
    assert store.counts() == {"ana": 1, "ben": 1}
    assert store.undo_last("nobody") is None


def test_export_to_trl_and_load_back_as_training_data(tmp_path):
    store = AnnotationStore(tmp_path / "collected_annotations.json")
    store.add(_pair("ana", "B"))                                   # B preferred -> 1 pair
    store.add(_pair("ana", "tie", prompt="Other"))                  # no preference
    store.add({"annotator": "ana", "prompt": "Rank", "responses": ["r0", "r1", "r2"], "ranking": [2, 0, 1]})
    path, n = store.export_trl(tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert n == 4 and rows[0] == {"prompt": "Say hi.", "chosen": "Go away.", "rejected": "Hi!", "category": "annotated"}
    assert [(r["chosen"], r["rejected"]) for r in rows[1:]] == [("r2", "r0"), ("r2", "r1"), ("r0", "r1")]
    for source in (path, tmp_path / "collected_annotations.json"):
        loaded, report = load_preference_dataset(str(source))
        assert len(loaded) == 4 and loaded[0]["chosen"] == "Go away."


def test_agreement_matches_hand_computation():
    records = []
    for i, (a, b) in enumerate(zip("AABB", "ABBB")):
        records.append({**_pair("ana", a, prompt=f"p{i}"), "item_id": f"i{i}", "mode": "pairwise"})
        records.append({**_pair("ben", b, prompt=f"p{i}"), "item_id": f"i{i}", "mode": "pairwise"})
    records.append({**_pair("ana", "A", prompt="solo"), "item_id": "solo", "mode": "pairwise"})  # seen once: ignored
    ag = agreement(records)
    # Cohen: p_o = 3/4, p_e = .5*.25 + .5*.75 = .5 -> kappa = .5
    assert ag["pairwise"]["kappa"] == [{"annotators": ["ana", "ben"], "n_items": 4, "kappa": pytest.approx(0.5)}]
    # Krippendorff nominal: o_AB = o_BA = 1, n_A = 3, n_B = 5, n = 8 -> alpha = 1 - (2/8) / (2*15/56) = 16/30
    assert ag["pairwise"]["alpha"] == pytest.approx(16 / 30)
    assert ag["pairwise"]["shared_items"] == 4


def test_ranking_agreement_perfect_and_reversed():
    same = [{"annotator": a, "item_id": f"r{i}", "mode": "ranking", "ranking": [0, 1, 2]} for i in range(3) for a in "xy"]
    assert agreement(same)["ranking"]["alpha"] == pytest.approx(1.0)
    rev = [{"annotator": "x", "item_id": f"r{i}", "mode": "ranking", "ranking": [0, 1, 2]} for i in range(3)] + \
          [{"annotator": "y", "item_id": f"r{i}", "mode": "ranking", "ranking": [2, 1, 0]} for i in range(3)]
    assert agreement(rev)["ranking"]["alpha"] < 0


def test_threads_lose_nothing(tmp_path):
    store = AnnotationStore(tmp_path / "a.json")
    errors = []

    def work(t):
        try:
            for j in range(20):
                AnnotationStore(tmp_path / "a.json").add(_pair(f"t{t}", "A", prompt=f"{t}-{j}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    prompts = [r["prompt"] for r in store.records()]
    assert len(prompts) == 160 and len(set(prompts)) == 160


WRITER = """
import sys
from alignment.annotations import AnnotationStore
store = AnnotationStore(sys.argv[1])
big = "x" * 200_000
i = 0
while True:
    store.add({"annotator": "w", "prompt": f"p{i}", "responses": [big, big + "y"], "choice": "A"})
    i += 1
"""


def test_sigkill_mid_write_leaves_a_valid_file(tmp_path):
    path = tmp_path / "collected_annotations.json"
    counts = []
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT)
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until it has written a few more records, then kill mid-stream
            try:
                n = len(json.loads(path.read_text())["annotations"])
            except (FileNotFoundError, json.JSONDecodeError):
                n = 0  # a reader may race os.replace on first creation only
            if n >= 3 * (round_ + 1):
                break
            time.sleep(0.05)
        time.sleep(0.013 * (round_ + 1))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data = json.loads(path.read_text())  # always complete JSON
        ids = [r["id"] for r in data["annotations"]]
        assert len(ids) == len(set(ids))
        counts.append(len(ids))
    assert counts == sorted(counts) and counts[-1] >= 9  # every round kept what earlier rounds wrote
    AnnotationStore(path).add(_pair("after", "A"))  # and the file is still usable (lock released by the kernel)


def test_20_clients_x_25_submissions_through_the_app(served_app):
    from gradio_client import Client

    manager, url = served_app
    errors = []

    def client(c):
        try:
            cl = Client(url, verbose=False)
            for j in range(25):
                cl.predict({"annotator": f"client{c}", "prompt": f"prompt {c}-{j}", "responses": ["a", "b"],
                            "choice": "AB"[j % 2]}, api_name="/submit_annotation")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(20)]
    [t.start() for t in threads]
    [t.join(timeout=300) for t in threads]
    assert not errors
    data = json.loads(manager.annotations.path.read_text())
    mine = [r for r in data["annotations"] if r["annotator"].startswith("client")]
    assert len(mine) == 500
    assert len({r["id"] for r in mine}) == 500 and len({r["prompt"] for r in mine}) == 500
