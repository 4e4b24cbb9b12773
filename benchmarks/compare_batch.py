"""Three students press Generate in Compare at the same moment: batched vs one after another (issue 11).

Usage::

    .venv/bin/python benchmarks/compare_batch.py            # the embedded SmolLM2
    .venv/bin/python benchmarks/compare_batch.py --tiny     # the tiny test model (a smoke run)

Class models first (a reward model and a DPO run of the quick preset), so each request answers with base and
DPO and scores with the reward model, as in class. Then, with the default Compare settings (96 new tokens,
temperature 0.7, seed 42) and three different prompts: the median time of one request alone; three requests
started together with batching (``COMPARE_BATCH_WINDOW_S``, one generate call) and without it (window 0: they
take the model's lock one after another). Reports each run's slowest request against one alone (the issue's
target: at most 1.5x with batching; 3x one after another) and the batch sizes. Writes
``<out>/compare_batch.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["Give one tip for learning a language.", "How do I make a cup of tea?", "Describe the moon in exactly 3 words."]


def together(manager, window_s: float) -> list[float]:
    manager.compare_batcher.window_s = window_s
    times = [0.0] * len(PROMPTS)

    def ask(i):
        t = time.perf_counter()
        manager.compare_models(PROMPTS[i])
        times[i] = time.perf_counter() - t

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return times


def main() -> int:
    from bench import cpu_features, cpuinfo_field
    from class7_1 import AlignmentComparisonManager

    kw = {"model_name": "tiny"} if "--tiny" in sys.argv else {}
    manager = AlignmentComparisonManager(output_dir=tempfile.mkdtemp(), preset="quick", **kw)
    # trained on the model pool's thread: PyTorch keeps an OpenMP team per thread that computed, and a second one
    # (here the main thread's) slows every forward pass of the other (alignment/serving/model_pool.py: run)
    manager.pool.run(manager.train_method, "reward")
    manager.pool.run(manager.train_method, "dpo")
    manager.compare_models(PROMPTS[0])  # load the model, the adapter and the reward model once
    window = manager.COMPARE_BATCH_WINDOW_S
    alone = []
    for p in PROMPTS:
        manager.compare_batcher.window_s = 0.0
        t = time.perf_counter()
        manager.compare_models(p)
        alone.append(time.perf_counter() - t)
    one = statistics.median(alone)
    rounds = {"batched": [], "one_after_another": []}
    for _ in range(2):  # alternate, so that a slow moment of the machine hits both alike
        rounds["batched"].append(together(manager, window))
        rounds["one_after_another"].append(together(manager, 0.0))
    result = {"machine": f"{cpuinfo_field('model name')}, {os.cpu_count()} cores ({', '.join(cpu_features())})",
              "model": manager.session.setup_model()["description"], "max_new_tokens": manager.COMPARE_MAX_NEW_TOKENS,
              "alone_s": [round(x, 2) for x in alone], "alone_median_s": round(one, 2),
              **{k: {"slowest_s": [round(max(r), 2) for r in v], "slowest_over_alone": [round(max(r) / one, 2) for r in v]}
                 for k, v in rounds.items()},
              "batch_sizes": manager.compare_batcher.sizes}
    out = ROOT / "outputs" / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_batch.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
