"""A class of 30 at once, on loopback only (issue 11): annotation, Compare, training requests and status polls
while a training runs.

Usage::

    .venv/bin/python benchmarks/class_load.py                     # 30 students, the embedded SmolLM2
    .venv/bin/python benchmarks/class_load.py --students 5 --annotations 4 --compares 1 --model tiny   # a smoke run

1. Class models first (in this process): a reward model and a DPO run of the quick preset, so Compare answers
   with base and DPO as in class.
2. The real app (``app.py``) in its own process on 127.0.0.1, one worker (the CPU default). A long PPO job (the
   "training that runs") is queued first, then ``--students`` simulated students start together. Each student
   annotates ``--annotations`` dataset items (about ``--think`` s between answers), asks ``--compares`` Compare
   requests (class models, the default 96 new tokens) and queues 2 trainings (a reward model and a DPO run) at
   random moments, and polls ``/training_status`` every 2 s (as the Train tab's timer does, less often).
   Every call goes through Gradio's HTTP API (``/gradio_api/run/<name>``), what ``gradio_client`` calls; each
   student keeps one Gradio session (``session_hash``), as a browser and ``gradio_client`` do. Plain httpx, not
   ``gradio_client``: the latter spends about 60 ms of client CPU per call here, on the 2 cores the server needs.
3. Reports p50/p95/max latency of annotation submits, Compare and status polls; records lost or duplicated
   (acknowledged ids against the store); training requests accepted, refused and duplicated (queue rows against
   acknowledged requests); the batches Compare requests shared. Queued jobs are cancelled at the end.

Targets (issue 11): annotation submit p95 <= 1 s during Compare generations and a training, 0 records lost,
0 duplicate jobs. Writes ``<out>/class_load.json``. Loops are bounded in count and time (``--timeout``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from alignment.models import DEFAULT_MODEL  # noqa: E402
from annotation_load import (free_port, latency_summary, machine, stop_app, student_record_ids,  # noqa: E402
                             wait_until_up)

SETTINGS = ("learning_rate", "max_steps", "batch_size", "beta", "clip_range", "group_size", "lora_r")


def run(out: Path, students: int, annotations: int, compares: int, think_s: float, model: str, timeout_s: float) -> dict:
    import httpx

    from alignment.annotations import AnnotationStore
    from alignment.serving.queue import JobQueue
    from class7_1 import AlignmentComparisonManager

    t = time.time()
    manager = AlignmentComparisonManager(model, output_dir=out, preset="quick")
    manager.train_method("reward")
    manager.train_method("dpo")
    setup_s = time.time() - t
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", model, "--output-dir", str(out),
                               "--preset", "quick", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    lat: dict[str, list[float]] = {"submit": [], "compare": [], "status": [], "start_training": []}
    acked, replies, errors = [], [], []
    lock = threading.Lock()
    stop_at = None

    def call(http, name: str, data: list, session: str):
        t0 = time.perf_counter()
        left = max(5.0, stop_at - time.time()) if stop_at else 600.0  # no call outlives the benchmark's deadline
        r = http.post(f"/gradio_api/run/{name}", json={"data": data, "session_hash": session}, timeout=left)
        r.raise_for_status()
        return r.json()["data"][0], time.perf_counter() - t0

    try:
        wait_until_up(url, server, 300)
        with httpx.Client(base_url=url, timeout=600) as http:  # the training that runs meanwhile
            call(http, "start_training", ["ppo", "quick", *[30 if s == "max_steps" else None for s in SETTINGS],
                                          "teacher", True], "teacher0000")
        stop_at = time.time() + timeout_s  # read by call() too
        done = threading.Event()

        def student(c: int) -> None:
            rng = random.Random(c)
            name, session = f"student{c:02d}", f"class{c:07d}"
            actions = ["annotate"] * annotations + ["compare"] * compares + ["reward", "dpo"]
            rng.shuffle(actions)
            with httpx.Client(base_url=url, timeout=900) as http:
                for j, action in enumerate(actions):
                    if time.time() > stop_at:
                        with lock:
                            errors.append("benchmark timeout")
                        return
                    time.sleep(think_s * rng.uniform(0.5, 1.5))
                    try:
                        if action == "annotate":
                            rec = {"annotator": name, "prompt": f"class load {c}-{j}",
                                   "responses": ["a" * 300, "b" * 300], "choice": "AB"[j % 2], "rationale": "because"}
                            stored, dt = call(http, "submit_annotation", [rec], session)
                            with lock:
                                lat["submit"].append(dt)
                                acked.append(stored["id"])
                        elif action == "compare":
                            answers, dt = call(http, "compare", ["Give one tip for learning a language.", 96, 0.7, 42,
                                                                 None, name], session)
                            assert "base" in answers
                            with lock:
                                lat["compare"].append(dt)
                        else:
                            msg, dt = call(http, "start_training", [action, "quick", *[2 if s == "max_steps" else None
                                                                                        for s in SETTINGS], name, False],
                                           session)
                            with lock:
                                lat["start_training"].append(dt)
                                replies.append((name, action, msg))
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        with lock:
                            errors.append(f"{action}: {exc!r}"[:200])

        def poller(c: int) -> None:
            session = f"poll{c:07d}"
            with httpx.Client(base_url=url, timeout=600) as http:
                while not done.is_set() and time.time() < stop_at:
                    try:
                        _, dt = call(http, "training_status", [f"student{c:02d}"], session)
                        with lock:
                            lat["status"].append(dt)
                    except Exception as exc:  # noqa: BLE001
                        with lock:
                            errors.append(f"status: {exc!r}"[:200])
                    done.wait(2.0)

        t0 = time.time()
        threads = [threading.Thread(target=student, args=(c,)) for c in range(students)]
        pollers = [threading.Thread(target=poller, args=(c,)) for c in range(students)]
        for th in threads + pollers:
            th.start()
        for th in threads:
            th.join(timeout=timeout_s + 60)
        done.set()
        for th in pollers:
            th.join(timeout=60)
        wall = time.time() - t0
        queue = JobQueue(out / "jobs.sqlite")
        rows = [j for j in queue.jobs(None, limit=10_000) if j["owner"].startswith("student")]
        ran = {s: n for s, n in queue.counts().items() if n}
        for j in queue.jobs(None, limit=10_000):
            queue.cancel(j["id"])  # the load is over: leave no job behind
    finally:
        stop_app(server)
    ids = student_record_ids(AnnotationStore(out / "collected_annotations.json"))
    accepted = [r for r in replies if "⚠️" not in r[2]]
    per_request = {(j["owner"], j["method"]) for j in rows}
    return {
        "students": students, "annotations_each": annotations, "compares_each": compares, "trainings_each": 2,
        "think_time_s": think_s, "model": model, "class_models_setup_s": round(setup_s, 1), "wall_s": round(wall, 1),
        "latency_ms": {k: latency_summary(v) for k, v in lat.items()},
        "annotations_acknowledged": len(acked), "records_lost": len(set(acked) - set(ids)),
        "records_duplicated": len(ids) - len(set(ids)),
        "training_requests": len(replies), "training_accepted": len(accepted),
        "training_refused": [r[2][:120] for r in replies if "⚠️" in r[2]][:5],
        "jobs_in_queue": len(rows), "duplicate_jobs": len(rows) - len(per_request),
        "job_states_at_end": ran, "errors": len(errors), "first_errors": errors[:5],
        "compares_unanswered_by_deadline": sum("compare" in e for e in errors),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--annotations", type=int, default=20)
    p.add_argument("--compares", type=int, default=5)
    p.add_argument("--think", type=float, default=2.0, help="mean seconds between a student's actions")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the embedded SmolLM2 by default; 'tiny' for a smoke run")
    p.add_argument("--timeout", type=float, default=600, help="seconds the students' part may take at most; a call "
                   "still waiting then is counted as unanswered")
    p.add_argument("--out", default="outputs/benchmark")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                  **run(Path(tmp), args.students, args.annotations, args.compares, args.think, args.model, args.timeout)}
    submit = (result["latency_ms"]["submit"] or {}).get("p95", 1e9)
    result["targets"] = {"submit_p95_le_1s": submit <= 1000, "records_lost": result["records_lost"] == 0,
                         "duplicate_jobs": result["duplicate_jobs"] == 0,
                         "every_training_request_accepted": result["training_accepted"] == result["training_requests"]}
    (out / "class_load.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
