"""How fast Stop ends a PPO run in the app's background thread (issue 14, item 4).

Usage::

    .venv/bin/python benchmarks/stop_latency.py --tiny     # the tiny test model: every PPO phase
    .venv/bin/python benchmarks/stop_latency.py            # the embedded SmolLM2: sampling and log-probs
    .venv/bin/python benchmarks/stop_latency.py --all      # the embedded SmolLM2: every phase

A reward model of 2 steps first; then, for each target phase, a PPO run stopped once it is in that phase of a
step after the first (1 s into it for sampling and update on the real model). Prints one JSON line per run: the
phase stopped in, the step time, ``stop_latency_s`` (Stop to the end of the thread), the phases seen after
Stop, and the run's status, steps done and whether its adapter was saved.
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
results = []
for target in ("sampling", "log-probs", "scoring", "update"):
    job = m.start_training("ppo", max_steps=30)
    while True:
        st = job.snapshot()
        if st["phase"] == target and st["step"] >= 1 and st["phase_elapsed_s"] >= (0.0 if tiny else 1.0 if target in ("sampling", "update") else 0.0):
            break
        if not st["running"]:
            raise SystemExit(f"ended before {target}: {st['status']} {st['error']}")
        time.sleep(0.002)
    at = time.time(); m.stop_training()
    seen, last = [], None
    while job.running:
        ph = job.current_phase
        if ph != last:
            seen.append((ph, round(time.time() - at, 2))); last = ph
        time.sleep(0.002)
    info = json.loads((m.run_dir("ppo") / "run_info.json").read_text())
    row = {"stopped_in": target, "step_time_s": st["step_time_s"], "stop_latency_s": job.stop_latency_s,
           "phases_after_stop": seen, "status": info["status"], "steps_done": info["steps_done"],
           "adapter": (m.run_dir("ppo") / "adapter" / "adapter_config.json").is_file()}
    print(json.dumps(row), flush=True)
    results.append(row)
    if tiny is False and "--all" not in sys.argv and len(results) >= 2:
        break
