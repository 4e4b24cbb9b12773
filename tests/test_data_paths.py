"""The Data tab reads only the server's data folders (issue 13): ``resolve_dataset_source`` directly and through
the real app's ``/load_dataset`` API; uploads never show server paths; skip reasons in "Need at least 16 pairs"."""

import json
import os
from types import SimpleNamespace

import pytest

from alignment.data import DataFolder, DisallowedSource, LoadReport, resolve_dataset_source, split_pairs
from alignment.data.sources import MAX_SOURCE_CHARS, is_hub_id, redact_paths, rejection_message

SECRET = "TOPSECRET-7f3a"
UP = "../../../../../../../../../../"  # more than enough '..' to reach / from any test folder


def _pairs(n: int, tag: str = "q") -> str:
    return "".join(json.dumps({"prompt": f"{tag} {i}", "chosen": f"yes {i}", "rejected": f"no {i}"}) + "\n"
                   for i in range(n))


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """root/classdata (the allowed folder: good.jsonl, sub/nested.jsonl, symlinks out) and root/secret/prefs.jsonl."""
    root = tmp_path_factory.mktemp("paths")
    data = root / "classdata"
    (data / "sub").mkdir(parents=True)
    (data / "good.jsonl").write_text(_pairs(20))
    (data / "sub" / "nested.jsonl").write_text(_pairs(20))
    secret_dir = root / "secret"
    secret_dir.mkdir()
    secret = secret_dir / "prefs.jsonl"
    secret.write_text(_pairs(40, SECRET))
    (data / "link.jsonl").symlink_to(secret)
    (data / "linkdir").symlink_to(secret_dir)
    (root / "org" / "name").mkdir(parents=True)  # a local folder shaped like the hub id "org/name"
    (root / "org" / "name" / "train.jsonl").write_text(_pairs(40, SECRET))
    return SimpleNamespace(root=root, data=data, secret=secret, folders=[DataFolder(data)])


def _rejected_inputs(p) -> dict[str, str]:
    """Every way out of the data folder that the issue names; each must get the same message."""
    rel_secret = os.path.relpath(p.secret, p.data)  # ../secret/prefs.jsonl
    return {
        "absolute path outside": str(p.secret),
        "../ traversal from the data folder": rel_secret,
        "../ traversal to the root": UP + str(p.secret).lstrip("/"),
        "traversal through the data folder": str(p.data / rel_secret),
        "URL-encoded traversal": rel_secret.replace(".", "%2e").replace("/", "%2f"),
        "half-encoded traversal": rel_secret.replace("/", "%2f"),
        "symlink out of the data folder": "link.jsonl",
        "symlinked folder out of the data folder": "linkdir/prefs.jsonl",
        "missing file outside": str(p.secret.with_name("missing.jsonl")),
        "missing file by traversal": UP + "tmp/nothing-here/prefs.jsonl",
        "NUL byte": "good.jsonl\x00",
        "NUL byte in an outside path": str(p.secret) + "\x00.jsonl",
        "over-long": "a/" * (MAX_SOURCE_CHARS // 2) + "good.jsonl",
        "a folder": "sub",
        "system file": "/etc/passwd",
        "home": "~/.bashrc",
        "empty": "   ",
    }


# ------------------------------------------------------------------------------------------ resolve_dataset_source
def test_allowed_sources_resolve_to_real_paths_inside_the_folder(places, monkeypatch):
    good = str((places.data / "good.jsonl").resolve())
    for text in ("good.jsonl", " good.jsonl ", good, "sub/../good.jsonl", "./good.jsonl"):
        assert resolve_dataset_source(text, places.folders, allow_hub=False) == good, text
    nested = resolve_dataset_source("sub/nested.jsonl", places.folders, allow_hub=False)
    assert nested == str((places.data / "sub" / "nested.jsonl").resolve())
    assert resolve_dataset_source("builtin", places.folders, allow_hub=False) == "builtin"
    monkeypatch.chdir(places.root)  # relative to the current directory, landing inside the folder
    assert resolve_dataset_source("classdata/good.jsonl", places.folders, allow_hub=False) == good


def test_an_allowed_single_file_outside_the_folders(places):
    annotations = places.root / "elsewhere" / "collected_annotations.json"
    annotations.parent.mkdir(exist_ok=True)
    annotations.write_text('{"version": 1, "annotations": []}')
    got = resolve_dataset_source(str(annotations), places.folders, allow_hub=False, allowed_files=[annotations])
    assert got == str(annotations.resolve())
    with pytest.raises(DisallowedSource):  # only that file, not its folder
        resolve_dataset_source(str(annotations.with_name("other.json")), places.folders, allow_hub=False,
                               allowed_files=[annotations])


@pytest.mark.parametrize("allow_hub", [False, True])
def test_every_way_out_gets_one_message_that_reveals_nothing(places, allow_hub):
    expected = rejection_message(places.folders, allow_hub=allow_hub)
    assert "classdata/" in expected and str(places.root) not in expected
    for case, text in _rejected_inputs(places).items():
        with pytest.raises(DisallowedSource) as info:
            resolve_dataset_source(text, places.folders, allow_hub=allow_hub)
        assert str(info.value) == expected, case


def test_hub_ids_only_online_and_never_a_local_folder(places, monkeypatch):
    monkeypatch.chdir(places.root)  # where datasets.load_dataset("org/name") would find the local folder
    assert resolve_dataset_source("Anthropic/hh-rlhf", places.folders, allow_hub=True) == "Anthropic/hh-rlhf"
    assert resolve_dataset_source("org/other", places.folders, allow_hub=True) == "org/other"
    for text, allow in [("Anthropic/hh-rlhf", False), ("org/name", True), ("org/../name", True),
                        ("org/name.jsonl", True), (".org/name", True), ("/org/name", True), ("org/name/x", True),
                        ("org%2fname", True), ("a" * 97 + "/b", True)]:
        with pytest.raises(DisallowedSource):
            resolve_dataset_source(text, places.folders, allow_hub=allow)
    (places.data / "org2" / "name").mkdir(parents=True)  # the same name inside a data folder counts too
    with pytest.raises(DisallowedSource):
        resolve_dataset_source("org2/name", places.folders, allow_hub=True)
    assert is_hub_id("Intel/orca_dpo_pairs") and not is_hub_id("Intel/orca..pairs")


def test_redact_paths_keeps_names_only():
    msg = "/tmp/gradio/ab12/prefs.jsonl: line 2 is not valid JSON (see /root/.cache/x/y.arrow, data/a.jsonl)"
    assert redact_paths(msg, {"/tmp/gradio/ab12/prefs.jsonl": "prefs.jsonl"}) == \
        "prefs.jsonl: line 2 is not valid JSON (see y.arrow, data/a.jsonl)"


def test_too_few_pairs_says_how_many_rows_were_skipped_and_why():
    report = LoadReport(source="long.jsonl")
    for i in range(90):
        report.skip(i, "prompt too long")
    with pytest.raises(ValueError, match=r"^Need at least 16 preference pairs, got 0: 90 skipped "
                                         r"\(prompt too long: 90\)$"):
        split_pairs([], report=report)
    report.skip(90, "empty response")
    with pytest.raises(ValueError, match=r"got 0: 91 skipped \(prompt too long: 90, empty response: 1\)"):
        split_pairs([], report=report)
    with pytest.raises(ValueError, match=r"^Need at least 16 preference pairs, got 3$"):  # nothing skipped
        split_pairs([{}] * 3, report=LoadReport(source="x"))


# ------------------------------------------------------------------------------------------ the app's /load_dataset
@pytest.fixture(scope="module")
def lab(places, tmp_path_factory):
    """A separate app whose Data tab may read ``classdata/`` (and its output folder); (manager, client)."""
    from conftest import launch_app
    from gradio_client import Client

    manager, demo, url = launch_app(tmp_path_factory.mktemp("lab"), data_dirs=[places.data])
    manager.load_preference_datasets()
    yield manager, Client(url, verbose=False)
    demo.close()


def _load(client, text, source="file path"):
    return client.predict(source, text, None, 0, api_name="/load_dataset")


def _assert_rejected(manager, result, expected, before):
    status = result[0]
    assert status == f"⚠️ {expected}\n\nThe previous dataset is still in use."
    assert SECRET not in json.dumps(result, default=str)
    assert manager.dataset_source == before[0] and manager.dataset_rows() == before[1]


def test_api_refuses_every_way_out_with_one_message(lab, places):
    manager, client = lab
    before = (manager.dataset_source, manager.dataset_rows())
    expected = rejection_message(manager.allowed_data_folders(), allow_hub=False)
    for case, text in _rejected_inputs(places).items():
        if not text.strip():
            continue  # the tab asks for a path first
        result = _load(client, text)
        _assert_rejected(manager, result, expected, before)
        assert str(places.root) not in result[0], case


def test_api_refuses_a_hub_id_naming_a_local_folder(lab, places, monkeypatch):
    manager, client = lab
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the server "has internet": hub ids are allowed
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.chdir(places.root)  # the app runs in this process: org/name is a local folder there
    before = (manager.dataset_source, manager.dataset_rows())
    expected = rejection_message(manager.allowed_data_folders(), allow_hub=True)
    _assert_rejected(manager, _load(client, "org/name", "hub dataset id"), expected, before)


def test_api_loads_files_inside_the_data_folder_without_showing_server_paths(lab, places):
    manager, client = lab
    good = places.data / "good.jsonl"
    for text in ("good.jsonl", str(good), "sub/nested.jsonl"):
        manager.set_dataset("builtin")
        status, preview, *_ = _load(client, text)
        assert "20 pairs" in status, text
        assert "classdata/" in status and str(places.root) not in status
        assert len(manager.dataset_rows()) == 20
    status, *_ = _load(client, "builtin")
    assert "built-in" in status and len(manager.dataset_rows()) == 200


def test_api_bad_file_inside_the_folder_keeps_the_helpful_message(lab, places):
    manager, client = lab
    (places.data / "bad.jsonl").write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "oops"\n')
    before = (manager.dataset_source, manager.dataset_rows())
    status, *_ = _load(client, "bad.jsonl")
    assert status.startswith("⚠️ classdata/bad.jsonl: line 2 is not valid JSON") and str(places.root) not in status
    assert manager.dataset_source == before[0] and manager.dataset_rows() == before[1]


def test_api_too_long_prompts_say_they_were_skipped(lab, places):
    manager, client = lab
    long = "".join(json.dumps({"prompt": "why " * 400 + str(i), "chosen": "yes", "rejected": "no"}) + "\n"
                   for i in range(90))
    (places.data / "long.jsonl").write_text(long)
    status, *_ = _load(client, "long.jsonl")
    assert "Need at least 16 preference pairs, got 0: 90 skipped (prompt too long: 90)" in status
    assert "previous dataset" in status


def test_api_loads_the_collected_annotations(lab):
    manager, client = lab
    path = manager.output_dir / "collected_annotations.json"  # written before the app's store opens it
    records = [{"annotator": "ana", "prompt": f"q {i}", "responses": [f"good {i}", f"bad {i}"], "choice": "A",
                "mode": "pairwise"} for i in range(20)]
    path.write_text(json.dumps({"version": 1, "annotations": records}))
    assert manager.annotations.path == path
    for source, text in (("collected annotations", ""), ("file path", str(path)),
                         ("file path", "collected_annotations.json")):
        manager.set_dataset("builtin")
        status, *_ = _load(client, text, source)
        assert "20 pairs" in status and "collected-annotations" in status, (source, text)
        assert str(path.parent) not in status
    manager.set_dataset("builtin")


def test_api_upload_messages_name_only_the_file(lab, tmp_path):
    from gradio_client import handle_file

    manager, client = lab
    bad = tmp_path / "my upload.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "oops"\n')
    before = (manager.dataset_source, manager.dataset_rows())
    status, *_ = client.predict("upload", "", handle_file(str(bad)), 0, api_name="/load_dataset")
    assert status.startswith("⚠️ my upload.jsonl: line 2 is not valid JSON"), status
    assert "/" not in status.split("\n")[0] and "gradio" not in status
    assert manager.dataset_source == before[0] and manager.dataset_rows() == before[1]
    good = tmp_path / "up.csv"
    good.write_text("prompt,chosen,rejected\n" + "".join(f"q{i},yes {i},no {i}\n" for i in range(20)))
    status, *_ = client.predict("upload", "", handle_file(str(good)), 0, api_name="/load_dataset")
    assert "20 pairs" in status and "from up.csv" in status and "/" not in status.split("·")[0]
    manager.set_dataset("builtin")


def test_raw_api_upload_of_a_server_path_is_refused(lab, places):
    """An API caller cannot pass a server path as the 'upload' (Gradio moves only files it received)."""
    import httpx

    manager, client = lab
    before = (manager.dataset_source, manager.dataset_rows())
    url = client.src.rstrip("/") + "/gradio_api/call/load_dataset"
    payload = {"data": ["upload", "", {"path": str(places.secret), "meta": {"_type": "gradio.FileData"}}, 0]}
    event = httpx.post(url, json=payload, timeout=30).json()["event_id"]
    answer = httpx.get(f"{url}/{event}", timeout=60).text
    assert "event: error" in answer and SECRET not in answer
    assert manager.dataset_source == before[0] and manager.dataset_rows() == before[1]


def test_app_data_dir_flag_repeatable_comma_separated_or_from_the_environment(tmp_path, monkeypatch):
    import app

    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    args = app.parse_args(["--data-dir", f"{a},{b}", "--data-dir", str(c)])
    assert app.parse_data_dirs(args.data_dir) == [str(a), str(b), str(c)]
    monkeypatch.setenv("CLASS7_DATA_DIRS", f"{a}, {b}")
    assert app.parse_data_dirs(app.parse_args([]).data_dir) == [str(a), str(b)]
    assert app.parse_data_dirs(args.data_dir) == [str(a), str(b), str(c)]  # the flag wins over the environment
    with pytest.raises(SystemExit, match="not a directory"):
        app.parse_data_dirs([str(tmp_path / "missing")])
