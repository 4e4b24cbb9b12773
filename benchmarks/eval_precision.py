"""The evaluation in fp32 (as the project runs it) against the same evaluation in bf16, side by side.

Usage::

    .venv/bin/python benchmarks/eval_precision.py --output-dir /tmp/main11

The folder must hold a finished ``class7_1.py`` run (``class/runs/...``); nothing is written to it. The bf16
evaluation casts the whole PEFT model (base weights and every adapter, unmerged) to bfloat16, so the adapters'
small updates are not lost in the rounding of merged weights; both evaluations score with the same reward
models (in the precision their run trained in). Prints per precision the seconds of each phase and per model
the KL and win rates, then how many answers the two precisions share, and the numerical noise of a bf16 KL
estimate: base's log-probs recorded while sampling against a forward pass over the same tokens (nats per
answer; 0 in fp32). Run it with nothing else on the machine.
"""

import copy
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import cpu_features, cpuinfo_field, run_folder_parser  # noqa: E402
from class7_1 import AlignmentComparisonManager  # noqa: E402


def main() -> None:
    from alignment.evaluation import DecodingConfig, evaluate_models, load_policy_with_adapters
    from alignment.generation import continuation_logps, generate_shared_noise
    from alignment.models import load_causal_lm
    from alignment.pipeline import gold_adapter
    from alignment.registry import POLICY_METHODS, method_of

    parser = run_folder_parser(__doc__)
    parser.add_argument("--eval-samples", type=int, default=4)
    args = parser.parse_args()
    manager = AlignmentComparisonManager(output_dir=args.output_dir)
    manager.load_preference_datasets()
    runs, session = manager.class_runs(), manager.session
    policies = {m: r.adapter for m, r in runs.items() if method_of(m) in POLICY_METHODS}
    scorer = manager.pool.scorer(runs["reward"].adapter)
    gold = gold_adapter(runs["reward"].adapter)
    gold_scorer = manager.pool.scorer(gold) if gold is not None else None
    fp32 = load_policy_with_adapters(load_causal_lm(session.source, session.tokenizer, seed=session.seed), policies)
    models = {"fp32": fp32, "bf16": copy.deepcopy(fp32).to(torch.bfloat16)}
    decoding = DecodingConfig(max_new_tokens=session.lengths.max_completion_length, seed=session.seed)
    prompts = manager.datasets["eval_prompts"]
    print(f"CPU: {cpuinfo_field('model name')}, {os.cpu_count()} cores, bf16 features: {', '.join(cpu_features())}")
    results = {}
    for tag, policy in models.items():
        starts: dict[str, float] = {}
        t0 = time.perf_counter()
        ev = evaluate_models(policy, session.tokenizer, scorer, prompts, ["base", *policies], decoding,
                             lambda phase, *_: starts.setdefault(phase, time.perf_counter() - t0),
                             samples_per_prompt=args.eval_samples, gold_scorer=gold_scorer)
        total = time.perf_counter() - t0
        marks = [*starts.items(), ("end", total)]
        print(f"== {tag}: {total:.1f} s (" + ", ".join(f"{p} {b - a:.1f} s" for (p, a), (_, b) in zip(marks, marks[1:]))
              + f"; {len(prompts)} prompts x {args.eval_samples} answers)")
        for name, model in ev["models"].items():
            s = model["summary"]
            rates = " ".join(f"{e} {100 * w['win_rate']:.1f}% [{100 * w['ci_low']:.0f}-{100 * w['ci_high']:.0f}]"
                             for e, w in s.get("win_rate_vs_base", {}).items())
            print(f"  {name:>6} KL {s['kl_to_base']:.2f} [{s['kl_ci_low']:.2f}-{s['kl_ci_high']:.2f}] {rates}")
        results[tag] = ev
    for name in results["fp32"]["models"]:
        a, b = (results[t]["models"][name]["samples"] for t in ("fp32", "bf16"))
        print(f"{name:>6}: {sum(x['response'] == y['response'] for x, y in zip(a, b))} of {len(a)} answers the same")
    rows = [p["prompt"] for p in prompts] * 2
    for tag, policy in models.items():
        with policy.disable_adapter():
            gens = generate_shared_noise(policy, session.tokenizer, rows, None, list(range(len(rows))),
                                         decoding.max_new_tokens, decoding.temperature, True, decoding.seed + 1)
            forward = continuation_logps(policy, session.tokenizer, rows, [g.token_ids for g in gens],
                                         decoding.temperature)
        d = np.array([sum(g.logps) - sum(f) for g, f in zip(gens, forward)])
        print(f"{tag}: log p(y) recorded while sampling - forward pass, nats per answer: mean {d.mean():+.4f}, "
              f"sd {d.std():.4f}, max |.| {np.abs(d).max():.4f} ({len(d)} base answers)")


if __name__ == "__main__":
    main()
