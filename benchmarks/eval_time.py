"""Where the evaluation's time goes: re-evaluate the class models of an output folder and time each phase.

Usage::

    .venv/bin/python benchmarks/eval_time.py --output-dir /tmp/preset4            # 4 answers per prompt
    .venv/bin/python benchmarks/eval_time.py --output-dir /tmp/preset4 --eval-samples 1
    .venv/bin/python benchmarks/eval_time.py --output-dir /tmp/preset4 --eval-prompts data/eval_prompts_60.json

The folder must hold a finished ``class7_1.py`` run (``class/runs/...``). Runs
``AlignmentComparisonManager.evaluate_alignment_methods`` (no LLM judge, no votes) and prints the seconds of
each phase (loading, generating answers, KL to base, scoring by the reward models), the total, the win rates by
evaluator with their half-widths, and the CPU's bf16 features. Run it with nothing else on the machine.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import cpu_features, cpuinfo_field, run_folder_parser  # noqa: E402
from class7_1 import AlignmentComparisonManager  # noqa: E402


def main() -> None:
    parser = run_folder_parser(__doc__)
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--eval-prompts", help="an evaluation prompt file (default data/eval_prompts.json)")
    args = parser.parse_args()
    manager = AlignmentComparisonManager(output_dir=args.output_dir, eval_samples=args.eval_samples,
                                         eval_prompts=args.eval_prompts)
    starts: dict[str, float] = {}
    t0 = time.perf_counter()

    def progress(fraction: float, desc: str) -> None:
        starts.setdefault(desc.split(":")[0], time.perf_counter() - t0)

    evaluation = manager.evaluate_alignment_methods(progress=progress, judge_and_votes=False)
    total = time.perf_counter() - t0
    marks = [*starts.items(), ("end", total)]
    print(f"CPU: {cpuinfo_field('model name')}, {os.cpu_count()} cores, bf16 features: {', '.join(cpu_features())}")
    for (phase, start), (_, end) in zip(marks, marks[1:]):
        print(f"{phase:<28} {end - start:6.1f} s")
    n_prompts = len(manager.datasets["eval_prompts"])
    print(f"{'total':<28} {total:6.1f} s  ({n_prompts} prompts x {args.eval_samples} answers)")
    for name, model in evaluation["models"].items():
        for evaluator, w in model["summary"].get("win_rate_vs_base", {}).items():
            print(f"{name:>6} by {evaluator:<9} {100 * w['win_rate']:5.1f}% [{100 * w['ci_low']:.0f}-"
                  f"{100 * w['ci_high']:.0f}] half-width {100 * w['half_width']:.1f}")


if __name__ == "__main__":
    main()
