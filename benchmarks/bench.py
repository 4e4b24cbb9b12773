"""Speed benchmark of the classroom preset on this machine, against plain-TRL baselines, in one run.

Usage::

    make bench                                   # everything (about 25 minutes on 2 CPU cores)
    .venv/bin/python benchmarks/bench.py --steps 4 --skip-preset --out outputs/benchmark

What it measures (results in ``<out>/benchmark.json`` and ``<out>/benchmark.md``):

1. The machine's matmul peak: a 2048 x 2048 matmul in fp32 and in bf16 (TFLOP/s).
2. Per method, N training steps with the project's settings and with a baseline (timed from step 2 on;
   seconds per step = the median step; each setting runs ``--repeats`` times, project and baseline
   alternating, and the fastest run is reported, as ``timeit`` does; all runs are in the JSON):
   reward model, DPO and GRPO against plain TRL (TRL defaults, fp32, same model, data, batch, LoRA and
   lengths; TRL's fused LM head then scores every position on CPU); PPO against our PPO with every
   optimisation off (fp32 rollouts and updates, LM head on every position). Seconds per step, tokens per second, estimated FLOP/s and its fraction of the measured peaks,
   and the ratio project / baseline.
3. Evaluation generation: base + 3 adapters on every evaluation prompt, batched as the pipeline does it
   (one mixed-adapter batch), against one-prompt-at-a-time ``model.generate`` (tokens per second).
4. Model load: cold (GGUF -> plain checkpoint conversion) and warm (from the cache); peak resident memory.
5. The classroom preset end to end (``class7_1.py``, a fresh process), by stage, with its peak resident memory.
6. The speed targets (``TARGETS``), each with its measured value and whether it is met, at the top of both
   files, and the CPU's bf16 features (AMX tiles, AVX-512 bf16), which set the bf16 matmul peak.

FLOP estimates use 2N FLOPs per token for a forward pass and 4N for forward + backward through a frozen base
with LoRA (no weight gradients for the base; Kaplan et al. 2020, Sec. 2.1, attention term ignored), N = the
model's parameter count. Per step: reward model 4N x tokens; DPO 6N (policy fwd+bwd, reference fwd);
GRPO 10N (generation, reference, reward model, policy fwd+bwd); PPO (8 + 4 x ppo_epochs)N (generation, old
log-probs, reference, reward model, ppo_epochs x fwd+bwd). Tokens are prompt + completion tokens per step
(TRL's ``num_tokens``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

FLOP_FACTOR = {"reward": 4, "dpo": 6, "grpo": 10}  # x N x tokens; PPO: 8 + 4 * ppo_epochs


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def matmul_peak(dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best / 1e12


def time_method(method: str, baseline: bool, steps: int, source, tokenizer, rows, scorer, n_params: int,
                **extra) -> dict:
    from alignment.config import make_config
    from alignment.registry import TrainInputs, method_spec
    from alignment.trainers.common import RunContext

    overrides = {"max_steps": steps, **extra}
    if baseline:  # fp32, no merged rollout copy, LM head on every position (TRL's CPU default)
        overrides.update(bf16=False, response_logits_only=False)
    cfg = make_config(method, **overrides)
    ctx = RunContext(Path(tempfile.mkdtemp()) / method, method, steps)
    method_spec(method).train(cfg, TrainInputs(source, tokenizer, rows, rows[:8], scorer), ctx)  # the registry's
    h = ctx.history
    steps_s = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(h, h[1:])]  # step 1 (warm-up) excluded
    seconds = statistics.median(steps_s)  # robust to one step slowed by another tenant of the machine
    tokens = (h[-1]["num_tokens"] - h[0]["num_tokens"]) / (len(h) - 1)
    factor = FLOP_FACTOR.get(method, 8 + 4 * getattr(cfg, "ppo_epochs", 0))
    return {"s_per_step": seconds, "steps_s": steps_s, "tokens_per_step": tokens, "tokens_per_s": tokens / seconds,
            "flop_per_s": factor * n_params * tokens / seconds, "bf16": cfg.bf16,
            "phases_s": {k: sum(r[k] for r in h[1:]) / (len(h) - 1) for k in h[-1] if k.startswith("time/")}}


def eval_generation(source, tokenizer, prompts: list[str], max_new_tokens: int, one_by_one: int) -> dict:
    """Batched mixed-adapter generation (pipeline) vs one prompt at a time with plain ``generate``."""
    from peft import get_peft_model

    from alignment.generation import generate_shared_noise, prompt_texts
    from alignment.models import load_causal_lm, lora_config

    torch.manual_seed(0)
    policy = get_peft_model(load_causal_lm(source, tokenizer), lora_config(), adapter_name="dpo")
    for name in ("ppo", "grpo"):
        policy.add_adapter(name, lora_config())
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.01)
    policy.eval()
    names = ["__base__", "dpo", "ppo", "grpo"]
    rows = [p for _ in names for p in prompts]
    adapters = [n for n in names for _ in prompts]
    t = time.perf_counter()
    gens = generate_shared_noise(policy, tokenizer, rows, adapters, list(range(len(prompts))) * 4, max_new_tokens)
    batched_s = time.perf_counter() - t
    batched_tokens = sum(g.length for g in gens)
    tokenizer.padding_side = "left"
    n_tokens, t = 0, time.perf_counter()
    for text in prompt_texts(tokenizer, prompts[:one_by_one]):
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        out = policy.generate(**enc, do_sample=True, temperature=0.7, top_k=0, max_new_tokens=max_new_tokens,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        n_tokens += out.size(1) - enc["input_ids"].size(1)
    single_s = time.perf_counter() - t
    return {"rows": len(rows), "batched_s": batched_s, "batched_tokens_per_s": batched_tokens / batched_s,
            "one_at_a_time_prompts": one_by_one, "one_at_a_time_tokens_per_s": n_tokens / single_s,
            "speedup": (batched_tokens / batched_s) / (n_tokens / single_s)}


def model_load() -> dict:
    from alignment.models import convert_embedded_gguf, load_causal_lm, load_tokenizer, resolve_model

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        convert_embedded_gguf(Path(tmp) / "model", force=True)
        cold = time.perf_counter() - t
    resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")  # make sure the cache exists
    t = time.perf_counter()
    source = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    tokenizer = load_tokenizer(source)
    load_causal_lm(source, tokenizer)
    return {"cold_conversion_s": cold, "warm_load_s": time.perf_counter() - t}


def classroom_preset(out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "class7_1.py"), "--output-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").is_file() else {}
    return {"returncode": proc.returncode, "wall_s": wall, "stages_s": timings,
            "peak_rss_gb": max(peak, before) / 1024**2, "log_tail": proc.stderr[-2000:] if proc.returncode else ""}


# The targets (issue 4): (name, key, bound, "max" | "min"); key picks the measured value from the results.
TARGETS = [
    ("classroom preset end to end, minutes", "preset_min", 5.0, "max"),
    ("DPO speed-up over plain TRL", "dpo_speedup", 2.0, "min"),
    ("GRPO speed-up over plain TRL", "grpo_speedup", 2.0, "min"),
    ("PPO / GRPO step time", "ppo_over_grpo", 1.5, "max"),
    ("evaluation generation speed-up over one at a time", "eval_speedup", 5.0, "min"),
    ("warm model load, seconds", "warm_load_s", 3.0, "max"),
    ("peak resident memory of the preset, GB", "preset_rss_gb", 6.0, "max"),
]


def cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of /proc/cpuinfo (Linux), or None elsewhere."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), None)


def cpu_features() -> list[str]:
    """The CPU flags that decide bf16 matmul speed (AMX tiles, AVX-512 bf16)."""
    flags = (cpuinfo_field("flags") or "").split()
    return sorted(f for f in flags if f in {"amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512f", "avx2"})


def run_folder_parser(doc: str) -> argparse.ArgumentParser:
    """The argument parser of a benchmark that re-measures a finished ``class7_1.py`` run: its description is the
    first line of ``doc``, and ``--output-dir`` (required) names the run's folder."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="a folder with a finished class7_1.py run")
    return parser


def check_targets(r: dict) -> list[dict]:
    """Each issue target with its measured value and whether it is met (None where that part was not run)."""
    methods, preset = r.get("methods", {}), r.get("classroom_preset") or {}
    measured = {
        "preset_min": preset["wall_s"] / 60 if preset.get("returncode") == 0 else None,
        "dpo_speedup": methods.get("dpo", {}).get("speedup"),
        "grpo_speedup": methods.get("grpo", {}).get("speedup"),
        "ppo_over_grpo": (methods["ppo"]["project"]["s_per_step"] / methods["grpo"]["project"]["s_per_step"]
                          if "ppo" in methods and "grpo" in methods else None),
        "eval_speedup": (r.get("eval_generation") or {}).get("speedup"),
        "warm_load_s": (r.get("model_load") or {}).get("warm_load_s"),
        "preset_rss_gb": preset.get("peak_rss_gb") if preset.get("returncode") == 0 else None,
    }
    out = []
    for name, key, bound, kind in TARGETS:
        v = measured[key]
        met = None if v is None else (v <= bound if kind == "max" else v >= bound)
        out.append({"target": name, "bound": bound, "kind": kind, "measured": v, "met": met})
    return out


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# Benchmark ({r['created']})", "",
             f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['threads']} threads), CPU features: "
             f"{', '.join(m.get('cpu_features') or ['unknown'])}. "
             f"Matmul peak: fp32 {r['peak_tflops']['fp32']:.2f} TFLOP/s, bf16 {r['peak_tflops']['bf16']:.2f} TFLOP/s.", "",
             "## Targets", "", "| target | bound | measured | met |", "| --- | --- | --- | --- |"]
    for t in check_targets(r):
        sign = "<=" if t["kind"] == "max" else ">="
        value = "not run" if t["measured"] is None else f"{t['measured']:.2f}"
        met = "" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {sign} {t['bound']:g} | {value} | {met} |")
    lines += ["",
              f"## Training steps ({r['steps']} steps each, step 1 excluded)", "",
              "| method | project s/step | baseline s/step | speed-up | project tokens/s | project GFLOP/s | % of bf16 peak | baseline % of fp32 peak |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, v in r["methods"].items():
        p, b = v["project"], v["baseline"]
        lines.append(f"| {name} | {p['s_per_step']:.2f} | {b['s_per_step']:.2f} | {b['s_per_step'] / p['s_per_step']:.2f}x | "
                     f"{p['tokens_per_s']:.0f} | {p['flop_per_s'] / 1e9:.0f} | {100 * p['flop_per_s'] / 1e12 / r['peak_tflops']['bf16']:.0f}% | "
                     f"{100 * b['flop_per_s'] / 1e12 / r['peak_tflops']['fp32']:.0f}% |")
    if "ppo" in r["methods"] and "grpo" in r["methods"]:
        grpo = r["methods"]["grpo"]["project"]["s_per_step"]
        lines.append(f"\nPPO / GRPO step time (8 prompts x 1 vs 2 prompts x 4 completions, 32 tokens): "
                     f"{r['methods']['ppo']['project']['s_per_step'] / grpo:.2f} with the preset's 2 PPO epochs")
        if "ppo_one_epoch" in r:
            lines[-1] += (f"; {r['ppo_one_epoch']['s_per_step'] / grpo:.2f} with 1 epoch (one pass over the batch, "
                          f"like GRPO's single iteration)")
    e = r.get("eval_generation")
    if e:
        lines += ["", "## Evaluation generation", "",
                  f"Batched (pipeline, {e['rows']} rows in mixed-adapter batches): {e['batched_tokens_per_s']:.0f} tokens/s "
                  f"in {e['batched_s']:.1f}s; one prompt at a time: {e['one_at_a_time_tokens_per_s']:.1f} tokens/s; "
                  f"speed-up {e['speedup']:.1f}x."]
    ld = r.get("model_load")
    if ld:
        lines += ["", f"Model load: cold conversion {ld['cold_conversion_s']:.1f}s, warm {ld['warm_load_s']:.2f}s. "
                  f"Peak RSS of the benchmark process: {r['peak_rss_gb']:.2f} GB."]
    pr = r.get("classroom_preset")
    if pr:
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in pr["stages_s"].items())
        lines += ["", "## Classroom preset end to end", "",
                  f"Wall {pr['wall_s']:.0f}s ({pr['wall_s'] / 60:.1f} min), peak RSS {pr['peak_rss_gb']:.2f} GB. Stages: {stages}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per method and setting")
    ap.add_argument("--methods", nargs="+", default=["reward", "dpo", "grpo", "ppo"])
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs per method and setting (alternating project/baseline); the fastest is reported")
    ap.add_argument("--skip-preset", action="store_true", help="skip the end-to-end classroom preset run")
    ap.add_argument("--out", default="outputs/benchmark")
    args = ap.parse_args(argv)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    from alignment.data import fit_to_length, load_eval_prompts, load_preference_dataset
    from alignment.generation import RewardScorer
    from alignment.models import load_causal_lm, load_sequence_classifier, load_tokenizer, resolve_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = cpuinfo_field("model name") or platform.processor()
    r: dict = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "steps": args.steps,
               "machine": {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "cpu_features": cpu_features()}}
    print("matmul peak ...", flush=True)
    r["peak_tflops"] = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print("model load ...", flush=True)
    r["model_load"] = model_load()
    source = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    tokenizer = load_tokenizer(source)
    n_params = sum(p.numel() for p in load_causal_lm(source, tokenizer).parameters())
    r["n_params"] = n_params
    rows, _ = load_preference_dataset("builtin")
    rows = fit_to_length(rows, tokenizer, 64, 32)
    scorer = RewardScorer(load_sequence_classifier(source, tokenizer), tokenizer, max_length=112)
    r["methods"] = {}

    def timed_run(label: str, method: str, baseline: bool, runs: list, **extra) -> None:
        print(f"{method} ({label}) ...", flush=True)
        runs.append(time_method(method, baseline, args.steps + 1, source, tokenizer, rows, scorer, n_params, **extra))

    def fastest(runs: list) -> dict:
        return {**min(runs, key=lambda x: x["s_per_step"]), "repeats_s_per_step": [x["s_per_step"] for x in runs]}

    for method in args.methods:  # project and baseline alternate, so a slow spell of the machine hits both
        runs: dict[str, list] = {"project": [], "baseline": []}
        for _ in range(args.repeats):
            for setting in ("project", "baseline"):
                timed_run(setting, method, setting == "baseline", runs[setting])
        p, b = fastest(runs["project"]), fastest(runs["baseline"])
        r["methods"][method] = {"project": p, "baseline": b, "speedup": b["s_per_step"] / p["s_per_step"]}
    if "ppo" in r["methods"] and "grpo" in r["methods"]:  # the same number of optimisation passes as GRPO
        runs = []
        for _ in range(args.repeats):
            timed_run("project, 1 epoch", "ppo", False, runs, ppo_epochs=1)
        r["ppo_one_epoch"] = fastest(runs)
    print("evaluation generation ...", flush=True)
    r["eval_generation"] = eval_generation(source, tokenizer, [p["prompt"] for p in load_eval_prompts()], 32, 4)
    r["peak_rss_gb"] = rss_gb()
    if not args.skip_preset:
        print("classroom preset end to end ...", flush=True)
        r["classroom_preset"] = classroom_preset(out / "classroom")
    r["targets"] = check_targets(r)
    (out / "benchmark.json").write_text(json.dumps(r, indent=2))
    (out / "benchmark.md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
