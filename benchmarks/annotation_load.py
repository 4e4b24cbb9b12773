"""Load and crash benchmark of the annotation store, on loopback only (issue 13, item 8).

Usage::

    .venv/bin/python benchmarks/annotation_load.py                       # 50 clients x 20 submits, 200 kills
    .venv/bin/python benchmarks/annotation_load.py --clients 10 --submits 5 --kills 10 --out /tmp/load

1. Load: the real app (``app.py --model tiny``, so the server's CPU goes to serving) in its own process on
   127.0.0.1, with ``--preload`` records already in the store (a class some way into the course);
   ``--clients`` clients in threads, each submitting ``--submits`` annotations through Gradio's HTTP API
   (``/gradio_api/run/submit_annotation``), first paced (``--think`` seconds between a reply and the next
   submit, on average), then back to back (the server's ceiling). Reports p50/p95/max submit latency (client
   side, request to acknowledged reply), and from the database and the exported JSON: records lost,
   duplicated and rejected. Each client keeps one Gradio session (``session_hash``), as the browser and
   ``gradio_client`` do: without one, Gradio rebuilds the state of every component of the app for each
   request (60% of the server's time in a profile). ``gradio_client`` itself spends about 60 ms of client
   CPU per call here, so 50 of them in one process would measure the client, not the server.
2. Crashes: ``--kills`` times, a writer process adding records (each acknowledged on stdout after its commit)
   is SIGKILLed at a random moment; after each kill a fresh store opens the files. Reports kills, acknowledged
   records, acknowledged records missing, invalid JSON files, invalid databases, temp files left.

Writes ``<out>/annotation_load.json`` and prints the figures with the machine's description. Targets (issue 13),
checked on the paced run: 0 lost, 0 duplicates, 0 rejected, p95 submit <= 200 ms; after every kill valid JSON
and database with 0 acknowledged records lost. The back-to-back run is reported, not judged. Every request goes to 127.0.0.1; loops are bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WRITER = """
import sys
from alignment.annotations import AnnotationStore
store = AnnotationStore(sys.argv[1], export_delay=0.05)
i = 0
while True:
    rec = store.add({"annotator": "writer", "prompt": f"p{i}", "responses": ["a" * 500, "b" * 500], "choice": "A"})
    print(rec["id"], flush=True)
    i += 1
"""


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation (``statistics.quantiles``' inclusive method)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def latency_summary(seconds: list[float]) -> dict | None:
    """``{"n", "p50", "p95", "max"}`` in milliseconds of request latencies given in seconds (None without any)."""
    ms = sorted(x * 1000 for x in seconds)
    return {"n": len(ms), "p50": round(percentile(ms, 50), 1), "p95": round(percentile(ms, 95), 1),
            "max": round(ms[-1], 1)} if ms else None


def stop_app(server: subprocess.Popen) -> None:
    """A normal shutdown (SIGINT: the annotation store writes its JSON file at exit), killed after 30 s."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def student_record_ids(store) -> list[str]:
    """The ids of the simulated students' records (annotators ``student*``) in ``store`` (an
    ``alignment.annotations.AnnotationStore``), duplicates kept."""
    return [r["id"] for r in store.records() if r["annotator"].startswith("student")]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    """Wait until the app at ``url`` answers its page. Raises RuntimeError if it exits or does not answer in time."""
    import httpx

    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline or server.poll() is not None:
            raise RuntimeError("the app did not start")
        time.sleep(0.5)


def load_test(out: Path, clients: int, submits: int, preload: int, think_s: float, timeout_s: float) -> dict:
    """``clients`` students against the app in its own process (as in class), each submitting ``submits``
    annotations through Gradio's HTTP API (``POST /gradio_api/run/submit_annotation``, what ``gradio_client`` and
    scripts call), waiting ``think_s`` seconds on average (uniform 0.5x-1.5x) between an answer and the next
    submit; 0 = back to back, the server's ceiling."""
    import httpx

    from alignment.annotations import AnnotationStore

    app_dir = out / f"app-{think_s}"
    store = AnnotationStore(app_dir / "collected_annotations.json")
    for i in range(preload):
        store.add({"annotator": f"old{i % 30}", "prompt": f"earlier {i}", "responses": ["x" * 300, "y" * 300],
                   "choice": "AB"[i % 2], "rationale": "r" * 100})
    store.close()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", "tiny", "--output-dir", str(app_dir),
                               "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server, 120)
        latencies: list[float] = []
        acked: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.time() + timeout_s

        def client(c: int) -> None:
            rng = random.Random(c)
            session = f"load{c:07d}"  # one session per client, as the browser and gradio_client keep
            with httpx.Client(base_url=url, timeout=60) as http:
                for j in range(submits):
                    if time.time() > deadline:
                        with lock:
                            errors.append("benchmark timeout")
                        return
                    time.sleep(think_s * rng.uniform(0.5, 1.5))
                    rec = {"annotator": f"student{c}", "prompt": f"load {c}-{j}", "responses": ["a" * 300, "b" * 300],
                           "choice": "AB"[j % 2], "rationale": "because"}
                    t = time.perf_counter()
                    try:
                        r = http.post("/gradio_api/run/submit_annotation", json={"data": [rec], "session_hash": session})
                        r.raise_for_status()
                        stored = r.json()["data"][0]
                    except Exception as exc:
                        with lock:
                            errors.append(repr(exc)[:200])
                        continue
                    dt = time.perf_counter() - t
                    with lock:
                        latencies.append(dt)
                        acked.append(stored["id"])

        t0 = time.time()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        [t.start() for t in threads]
        [t.join(timeout=timeout_s) for t in threads]
        wall = time.time() - t0
    finally:
        stop_app(server)
    store = AnnotationStore(app_dir / "collected_annotations.json")
    ids = student_record_ids(store)
    exported = [r["id"] for r in json.loads(store.path.read_text())["annotations"] if r["annotator"].startswith("student")]
    return {
        "clients": clients, "submits_per_client": submits, "think_time_s": think_s, "preloaded_records": preload,
        "wall_s": round(wall, 1), "submits_acknowledged": len(acked), "rejected_or_failed": len(errors),
        "errors": errors[:5], "lost": len(set(acked) - set(ids)), "lost_in_json": len(set(acked) - set(exported)),
        "duplicates": len(ids) - len(set(ids)),
        "latency_ms": latency_summary(latencies),
        "throughput_per_s": round(len(acked) / wall, 1),
    }


def kill_test(out: Path, kills: int, seed: int = 0) -> dict:
    from alignment.annotations import AnnotationStore

    path = out / "kills" / "collected_annotations.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    acked: set[str] = set()
    missing = bad_json = bad_db = 0
    temp_left = temp_after_kill = 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(rng.randrange(1, 8)):  # let it acknowledge a few, then kill at a random moment
            line = proc.stdout.readline().strip()
            if line:
                acked.add(line)
        time.sleep(rng.random() * 0.03)
        os.kill(proc.pid, signal.SIGKILL)
        acked.update(line.strip() for line in proc.stdout.read().splitlines() if line.strip())
        proc.wait()
        temp_after_kill = max(temp_after_kill, len(list(path.parent.glob("*.tmp"))))
        try:  # the files as the kill left them, before anyone repairs anything
            json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            bad_json += 1
        try:
            con = sqlite3.connect(path.with_suffix(".sqlite3"))
            ok = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            con.close()
            bad_db += not ok
        except sqlite3.DatabaseError:
            bad_db += 1
        store = AnnotationStore(path)
        ids = {r["id"] for r in store.records()}
        missing = len(acked - ids)
        temp_left = max(temp_left, len(list(path.parent.glob("*.tmp"))))
        store.close()
    return {"kills": kills, "acknowledged": len(acked), "acknowledged_missing": missing,
            "invalid_json_after_kill": bad_json, "invalid_database_after_kill": bad_db,
            "temp_files_after_kill_max": temp_after_kill, "temp_files_after_restart": temp_left}


def machine() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import cpu_features, cpuinfo_field

    return (f"{cpuinfo_field('model name') or platform.processor()}, {os.cpu_count()} cores "
            f"({', '.join(cpu_features())}), Python {platform.python_version()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--submits", type=int, default=20)
    p.add_argument("--preload", type=int, default=2000, help="records already in the store")
    p.add_argument("--think", type=float, default=1.0,
                   help="mean seconds a student takes between submits in the paced run (a human takes far longer)")
    p.add_argument("--kills", type=int, default=200)
    p.add_argument("--timeout", type=float, default=600, help="seconds the load part may take at most")
    p.add_argument("--out", default="outputs/benchmark")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                  "load": load_test(Path(tmp), args.clients, args.submits, args.preload, args.think, args.timeout),
                  "back_to_back": load_test(Path(tmp), args.clients, args.submits, args.preload, 0.0, args.timeout),
                  "kills": kill_test(Path(tmp), args.kills) if args.kills else None}
    lat = result["load"]["latency_ms"] or {}
    result["targets"] = {
        "lost": result["load"]["lost"] == 0, "duplicates": result["load"]["duplicates"] == 0,
        "rejected": result["load"]["rejected_or_failed"] == 0
        and result["back_to_back"]["rejected_or_failed"] == 0 and result["back_to_back"]["lost"] == 0, "p95_submit_le_200ms": lat.get("p95", 1e9) <= 200,
        **({"kills_no_loss_valid_files": result["kills"]["acknowledged_missing"] == 0
            and result["kills"]["invalid_json_after_kill"] == 0 and result["kills"]["invalid_database_after_kill"] == 0}
           if result["kills"] else {}),
    }
    (out / "annotation_load.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
