"""How long the Compare tab takes to answer, and how often the answer is complete, by answer budget.

Usage::

    .venv/bin/python benchmarks/compare_length.py            # embedded SmolLM2, base model, 10 eval prompts

For each evaluation prompt, the base model answers at 32, 64 and 96 new tokens (interleaved, so a slow spell
of the machine hits every budget alike) with ``manager.compare_models`` at temperature 0.7, seed 42. Prints the
median seconds per answer, the fraction of answers that end with EOS (complete) and the mean length, with the
CPU's bf16 features (timings differ between CPUs with and without AMX).
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from alignment.data import load_eval_prompts  # noqa: E402
from class7_1 import AlignmentComparisonManager  # noqa: E402

BUDGETS = (32, 64, 96)


def main() -> None:
    manager = AlignmentComparisonManager(output_dir="outputs/benchmark/compare_length")
    manager.setup_models()
    manager.pool.model()
    prompts = [p["prompt"] for p in load_eval_prompts()][:10]
    res = {n: {"s": [], "eos": [], "len": []} for n in BUDGETS}
    for p in prompts:
        for n in BUDGETS:
            t = time.perf_counter()
            a = manager.compare_models(p, n, 0.7, 42)["base"]
            res[n]["s"].append(time.perf_counter() - t)
            res[n]["eos"].append(a["ended_with_eos"])
            res[n]["len"].append(a["length_tokens"])
    from bench import cpu_features, cpuinfo_field

    print(f"CPU: {cpuinfo_field('model name')}, {os.cpu_count()} cores, bf16 features: {', '.join(cpu_features())}")
    for n, r in res.items():
        print(f"{n:>3} tokens: median {statistics.median(r['s']):.2f} s, "
              f"ended with EOS {sum(r['eos']) / len(r['eos']):.0%}, mean length {statistics.mean(r['len']):.1f}")


if __name__ == "__main__":
    main()
