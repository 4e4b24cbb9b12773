"""How fast Stop ends a PPO job in the app's queue: the job runs in its own worker process, as in class.

Usage::

    .venv/bin/python benchmarks/stop_latency.py --tiny     # the tiny test model: every PPO phase
    .venv/bin/python benchmarks/stop_latency.py            # the embedded SmolLM2: sampling and log-probs
    .venv/bin/python benchmarks/stop_latency.py --all      # the embedded SmolLM2: every phase

A class reward model of 2 steps first (in this process); then, for each target phase, a PPO job queued for a
student and stopped (``stop_training``) once its worker reports that phase in a step after the first (1 s into
it for sampling and update on the real model). Prints one JSON line per run: the phase stopped in, the step time,
``stop_latency_s`` (Stop to the job leaving ``running``, as the page sees it), the job's state, and the run's
status, steps done and whether its adapter was saved (a graceful stop saves it; a job still running 1.4 s after
Stop is terminated, without one).
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from class7_1 import AlignmentComparisonManager  # noqa: E402

tiny = "--tiny" in sys.argv
kw = {"model_name": "tiny", "preset": "quick"} if tiny else {}
m = AlignmentComparisonManager(output_dir=tempfile.mkdtemp(), **kw)
t = time.time(); m.load_preference_datasets(); print(f"datasets+tokenizer {time.time()-t:.1f}s", flush=True)
t = time.time(); m.train_method("reward", max_steps=2); print(f"reward model, 2 steps: {time.time()-t:.1f}s", flush=True)
m.start_workers()
results = []
for target in ("sampling", "log-probs", "scoring", "update"):
    job = m.start_training("ppo", user="bench", max_steps=30)
    while True:
        st = m.training_status("bench", detail=False)["current"]
        if st["state"] == "running" and st.get("phase") == target and st.get("step", 0) >= 1 and \
                (st.get("phase_elapsed_s") or 0) >= (0.0 if tiny else 1.0 if target in ("sampling", "update") else 0.0):
            break
        if st["state"] not in ("queued", "running"):
            raise SystemExit(f"ended before {target}: {st['state']} {st.get('error')}")
        time.sleep(0.005)
    at = time.time(); m.stop_training("bench")
    while m.queue.get(job["id"])["state"] == "running":
        time.sleep(0.005)
    latency = time.time() - at
    end = m.training_status("bench", detail=False)["current"]
    run = m.output_dir / end["run"]
    info = json.loads((run / "run_info.json").read_text())
    row = {"stopped_in": target, "step_time_s": st.get("step_time_s"), "stop_latency_s": round(latency, 2),
           "state": end["state"], "status": info["status"], "steps_done": info["steps_done"],
           "adapter": (run / "adapter" / "adapter_config.json").is_file()}
    print(json.dumps(row), flush=True)
    results.append(row)
    if tiny is False and "--all" not in sys.argv and len(results) >= 2:
        break
m.close()
