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
    store = AnnotationStore(tmp_path / "collected_annotations.json", export_delay=0.1)
    rec = store.add({**_pair("ana", "A"), "rationale": "polite"})
    assert rec["annotator"] == "ana" and rec["choice"] == "A" and rec["mode"] == "pairwise"
    assert rec["item_id"] == item_id("Say hi.", ["Hi!", "Go away."]) and len(rec["id"]) == 32 and rec["timestamp"]
    assert store.records() == [rec]  # committed before add() returned
    deadline = time.time() + 5  # the JSON file follows the database within about export_delay, without flush()
    while json.loads(store.path.read_text())["annotations"] != [rec]:
        assert time.time() < deadline, "collected_annotations.json did not follow the database"
        time.sleep(0.05)
    assert AnnotationStore(tmp_path / "collected_annotations.json").records() == [rec]  # a new store (connection) sees it


@pytest.mark.parametrize("bad, message", [
    ({"annotator": "", "prompt": "p", "responses": ["a", "b"], "choice": "A"}, "name"),
    ({"annotator": "x", "prompt": "", "responses": ["a", "b"], "choice": "A"}, "prompt"),
    ({"annotator": "x", "prompt": "p", "responses": ["a"], "choice": "A"}, "at least 2"),
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b"], "choice": "C"}, "choice"),
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 0, 1]}, "permutation of 0..2"),
    # the poisoned records: each was stored before and broke a reader, or was silently coerced
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b"], "choice": "A", "item_id": ["list"]}, "item_id"),
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b", "c"], "ranking": [0.9, 1.5, 2.1]}, "ranking"),
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b", "c"], "ranking": "012"}, "ranking"),
    ({"annotator": "x", "prompt": "p", "responses": "ab", "choice": "A"}, "responses"),
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b"], "choice": "A", "rationale": "x" * 1_000_000}, "rationale"),
    ({"annotator": "x", "prompt": "p", "responses": [str(i) for i in range(1000)], "ranking": list(range(1000))},
     "at most 6"),
    ({"annotator": "x", "prompt": "p", "responses": ["a", "b"], "ranking": [1, 0]}, "3 to 6"),
    ({"annotator": "<a href=http://x>Click</a>", "prompt": "p", "responses": ["a", "b"], "choice": "A"}, "letters"),
    ({"annotator": "x", "prompt": "p" * 9000, "responses": ["a", "b"], "choice": "A"}, "too long"),
    ({"annotator": "x", "prompt": [{"role": "user", "content": 5}], "responses": ["a", "b"], "choice": "A"}, "prompt"),
    (["not", "an", "object"], "object"),
])
def test_bad_records_are_refused_and_nothing_is_written(tmp_path, bad, message):
    store = AnnotationStore(tmp_path / "a.json")
    store.add(_pair("ana", "A"))
    with pytest.raises(ValueError, match=message):
        store.add(bad)
    assert len(store.records()) == 1 and store.counts() == {"ana": 1}


def test_poisoned_file_is_imported_without_its_bad_records(tmp_path):
    """A hand-edited or old file with malformed records: they are skipped and counted, never fatal to readers."""
    path = tmp_path / "collected_annotations.json"
    good = {"id": "g1", "timestamp": "2026-01-01T00:00:00+00:00", **_pair("ana", "B"), "mode": "pairwise"}
    bad = [{**_pair("ben", "A"), "item_id": ["unhashable"]}, {**_pair("carl", "A"), "responses": "ab"}, "junk",
           {"annotator": "dan", "prompt": "p", "responses": ["a", "b", "c"], "ranking": [0.9, 1.5, 2.1]}]
    path.write_text(json.dumps({"version": 1, "annotations": [good, *bad]}))
    rows, report = load_preference_dataset(str(path))  # the dataset reader skips what it cannot read, with a reason
    assert len(rows) == 2 and sum(report.skipped.values()) == 3  # (it needs no item_id)
    assert any("malformed annotation" in reason for reason in report.skipped)
    store = AnnotationStore(path)
    assert store.skipped_on_import == 4 and [r["id"] for r in store.records()] == ["g1"]
    assert agreement(store.records())["pairwise"]["shared_items"] == 0 and store.n_pairs() == 1
    assert [r["id"] for r in json.loads(path.read_text())["annotations"]] == ["g1"]  # the file is re-exported


def test_corrupt_file_is_never_overwritten(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"annotations": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        AnnotationStore(path)
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


def test_pairs_are_counted_once_per_record(tmp_path, monkeypatch):
    """Statistics read the stored pair count; deriving pairs again on every refresh made K=4000 rankings cost
    3 s and 1.5 GB per refresh."""
    import alignment.annotations as ann
    from class7_1 import AlignmentComparisonManager

    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path)
    manager.submit_annotation(_pair("ana", "A"))
    manager.submit_annotation({"annotator": "ana", "prompt": "r", "responses": list("abcdef"), "ranking": [5, 4, 3, 2, 1, 0]})
    manager.submit_annotation(_pair("ben", "tie"))
    assert manager.annotations.n_pairs() == len(manager.annotations.to_pairs()) == 1 + 15

    def derive(*args, **kwargs):
        raise AssertionError("pairs derived again")

    monkeypatch.setattr(ann, "annotations_to_pairs", derive)
    summary = manager.annotation_summary("ana")
    assert summary["pairs"] == 16 and summary["counts"] == {"ana": 2, "ben": 1} and len(summary["history"]) == 2


def test_busy_store_says_try_again_and_saves_nothing(tmp_path):
    import sqlite3

    from alignment.annotations import StoreBusy

    store = AnnotationStore(tmp_path / "a.json", busy_timeout=0.2)
    blocker = sqlite3.connect(store.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        with pytest.raises(StoreBusy, match="try again"):
            store.add(_pair("ana", "A"))
    finally:
        blocker.execute("ROLLBACK")
    assert store.records() == []
    store.add(_pair("ana", "A"))
    assert store.total() == 1


def test_stale_temp_files_are_removed_at_start_up(tmp_path):
    path = tmp_path / "collected_annotations.json"
    for i in range(5):  # what killed writers of the old store left behind
        (tmp_path / f"collected_annotations.json.{i}abc.tmp").write_text("x" * 1000)
    (tmp_path / "collected_annotations.json.tmp").write_text("{")
    (tmp_path / "keep.tmp").write_text("not ours")
    store = AnnotationStore(path)
    for i in range(30):
        store.add(_pair("ana", "A", prompt=f"p{i}"))
        store.flush()
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == ["keep.tmp"]


def test_export_to_trl_and_load_back_as_training_data(tmp_path):
    store = AnnotationStore(tmp_path / "collected_annotations.json")
    store.add(_pair("ana", "B"))                                   # B preferred -> 1 pair
    store.add(_pair("ana", "tie", prompt="Other"))                  # no preference
    store.add({"annotator": "ana", "prompt": "Rank", "responses": ["r0", "r1", "r2"], "ranking": [2, 0, 1]})
    path, n = store.export_trl(tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert n == 4 and rows[0] == {"prompt": "Say hi.", "chosen": "Go away.", "rejected": "Hi!", "category": "annotated"}
    assert [(r["chosen"], r["rejected"]) for r in rows[1:]] == [("r2", "r0"), ("r2", "r1"), ("r0", "r1")]
    for source in (path, store.flush()):
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
store = AnnotationStore(sys.argv[1], export_delay=0.0)
big = "x" * 7000
i = 0
while True:
    rec = store.add({"annotator": "w", "prompt": f"p{i}", "responses": [big, big + "y"], "choice": "A"})
    print(rec["id"], flush=True)  # acknowledged: committed before add() returned
    i += 1
"""


def test_sigkill_mid_write_loses_no_acknowledged_record(tmp_path):
    """Kill the writer at random points (mid-commit, mid-export); every acknowledged record survives, the
    database and the JSON file stay valid and no temp file accumulates. ``benchmarks/annotation_load.py
    --kills 200`` runs the same check 200 times."""
    import random

    path = tmp_path / "collected_annotations.json"
    acked: list[str] = []
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(rng.randrange(3, 12)):
            acked.append(proc.stdout.readline().strip())
        time.sleep(rng.random() * 0.05)
        os.kill(proc.pid, signal.SIGKILL)
        acked += [line.strip() for line in proc.stdout.read().splitlines()]  # printed before the kill landed
        proc.wait()
        json.loads(path.read_text())  # as the kill left it, before anything repairs it: complete JSON
        assert len(list(tmp_path.glob("*.tmp"))) <= 1  # one fixed temp name: at most one left by a kill
        store = AnnotationStore(path)  # start-up re-exports the JSON from the database
        ids = [r["id"] for r in store.records()]
        assert set(acked) <= set(ids) and len(ids) == len(set(ids))
        assert [r["id"] for r in json.loads(path.read_text())["annotations"]] == ids
        assert not list(tmp_path.glob("*.tmp"))
    assert len(acked) >= 12


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
    data = json.loads(manager.annotations.flush().read_text())
    mine = [r for r in data["annotations"] if r["annotator"].startswith("client")]
    assert len(mine) == 500
    assert len({r["id"] for r in mine}) == 500 and len({r["prompt"] for r in mine}) == 500


def test_nothing_of_an_earlier_or_hand_edited_file_is_lost(tmp_path):
    """Records the stricter checks refuse, and hand edits of the JSON, are kept in a backup before the export
    replaces the file; a file that is only an older export is replaced without one."""
    path = tmp_path / "collected_annotations.json"
    legacy = [{"id": "old1", "annotator": "Smith, J", "prompt": "p", "responses": ["a", "b"], "choice": "A"},
              {"id": "old2", "annotator": "ana", "prompt": "p", "responses": ["a", "b"], "choice": "B"}]
    path.write_text(json.dumps({"version": 1, "annotations": legacy}))
    store = AnnotationStore(path)
    assert store.skipped_on_import == 1 and [r["id"] for r in store.records()] == ["old2"]
    (backup,) = store.backups
    assert json.loads(backup.read_text())["annotations"] == legacy  # the refused record survives there
    store.add(_pair("ben", "A"))
    store.flush()
    assert len(store.backups) == 1 and len(AnnotationStore(path).backups) == 0  # own exports: no backups
    data = json.loads(path.read_text())
    data["annotations"][0]["rationale"] = "fixed by the teacher"
    path.write_text(json.dumps(data))
    store.flush()
    assert json.loads(store.backups[-1].read_text()) == data and len(store.backups) == 2
