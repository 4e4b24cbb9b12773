"""What one film-strip frame costs: the same frame of a trained PPO policy taken in fp32 and with ``bf16``, side by
side, with its parts (sampling, the KL's two forward passes, each reward model).

Usage::

    .venv/bin/python benchmarks/film_strip_time.py --output-dir /tmp/preset7

The folder must hold a finished ``class7_1.py`` run (``class/runs/ppo`` and ``class/runs/reward``). Each part runs
``--repeats`` times after one warm-up and the fastest run is reported (as ``timeit`` does), fp32 and bf16
alternating; the script also says how many of the 8 answers the two precisions share. The frames it takes go to
``<output-dir>/film_strip_time/film_strip.jsonl``. Run it with nothing else on the machine.
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench import cpu_features, cpuinfo_field, run_folder_parser  # noqa: E402
from class7_1 import AlignmentComparisonManager  # noqa: E402


def fastest(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = run_folder_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from peft import PeftModel

    from alignment.generation import MergedRolloutModel, generate_shared_noise, sequence_log_ratio
    from alignment.models import load_causal_lm
    from alignment.pipeline import gold_adapter, load_reward_scorer
    from alignment.trainers.film_strip import FilmStrip, Referees, pick_prompts

    manager = AlignmentComparisonManager(output_dir=args.output_dir)
    runs = manager.class_runs()
    if "ppo" not in runs or "reward" not in runs:
        sys.exit(f"{args.output_dir} holds no finished PPO and reward runs: run class7_1.py there first")
    session = manager.session
    session.setup_model()
    manager.load_preference_datasets()
    cfg = session.configs["ppo"]
    policy = PeftModel.from_pretrained(load_causal_lm(session.source, session.tokenizer), str(runs["ppo"].adapter),
                                       is_trainable=True).eval()
    proxy = load_reward_scorer(session, runs["reward"].adapter)
    gold_path = gold_adapter(runs["reward"].adapter)
    gold = load_reward_scorer(session, gold_path) if gold_path is not None else None
    rows = pick_prompts(manager.datasets["eval_prompts"], cfg.film_strip_prompts)
    prompts = [r["prompt"] for r in rows]
    n, tokens, temp = len(prompts), cfg.max_completion_length, cfg.temperature
    rollout = MergedRolloutModel(policy)
    out = Path(args.output_dir) / "film_strip_time"
    out.mkdir(exist_ok=True)
    strips = {p: FilmStrip(out, session.tokenizer, rows, Referees(proxy, gold), every=1, max_new_tokens=tokens,
                           temperature=temp, seed=cfg.seed, bf16=p == "bf16") for p in ("fp32", "bf16")}
    samplers = {"fp32": policy, "bf16": rollout.model}
    gens = {}
    results: dict[str, dict[str, float]] = {"fp32": {}, "bf16": {}}
    with torch.no_grad():
        for p in ("fp32", "bf16"):
            gens[p] = generate_shared_noise(samplers[p], session.tokenizer, prompts, None, list(range(n)), tokens,
                                            temp, True, cfg.seed, n)
        texts = [g.text for g in gens["fp32"]]
        ids = [g.token_ids for g in gens["fp32"]]
        for part, fn in {
            "sampling": lambda p: generate_shared_noise(samplers[p], session.tokenizer, prompts, None,
                                                        list(range(n)), tokens, temp, True, cfg.seed, n),
            "KL (two fp32 forwards)": lambda p: sequence_log_ratio(policy, session.tokenizer, prompts, ids, temp,
                                                                   batch_size=n),
            "proxy reward model": lambda p: proxy.score(prompts, texts, bf16=p == "bf16"),
            **({"gold reward model": lambda p: gold.score(prompts, texts, bf16=p == "bf16")} if gold else {}),
            "whole frame": lambda p: strips[p].capture(1, policy, rollout if p == "bf16" else None),
        }.items():
            for p in ("fp32", "bf16"):
                results[p][part] = fastest(lambda: fn(p), args.repeats)
    print(f"CPU: {cpuinfo_field('model name')}, {os.cpu_count()} cores, bf16 features: {', '.join(cpu_features())}")
    print(f"one frame: {n} prompts x up to {tokens} tokens, fastest of {args.repeats}")
    print(f"{'part':<26} {'fp32':>8} {'bf16':>8}")
    for part in results["fp32"]:
        print(f"{part:<26} {results['fp32'][part]:7.2f}s {results['bf16'][part]:7.2f}s")
    same = sum(a.token_ids == b.token_ids for a, b in zip(gens["fp32"], gens["bf16"]))
    print(f"answers identical in both precisions: {same} of {n}")


if __name__ == "__main__":
    main()
