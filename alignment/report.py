"""The three report files, plus plotly charts.

- ``alignment_comparison_report.json``: setup, dataset statistics, per-method training metrics and time,
  evaluation summary per model, recommendations derived from the numbers;
- ``evaluation_results.json``: per-model, per-prompt detail;
- ``final_summary.json``: artifacts and what was learned;
- ``plots/*.html``: training curves, mean reward by model, reward vs KL, length vs reward, per-category bars.

All JSON is strict (NaN/inf become null).
"""

from __future__ import annotations

import time
from pathlib import Path

from .trainers.common import write_json

# metric that tells whether each method moved in the intended direction
TREND_METRICS = {
    "reward": ["loss", "accuracy", "margin"],
    "dpo": ["loss", "rewards/accuracies", "rewards/margins"],
    "ppo": ["objective/scores", "objective/kl", "objective/rlhf_reward"],
    "grpo": ["reward", "kl"],
}


def quarter_means(history: list[dict], key: str) -> dict | None:
    """Mean of ``key`` over the first and the last quarter of the logged steps (at least one step each)."""
    values = [row[key] for row in history if row.get(key) is not None]
    if not values:
        return None
    q = max(1, len(values) // 4)
    first, last = sum(values[:q]) / q, sum(values[-q:]) / q
    return {"first_quarter": first, "last_quarter": last, "change": last - first, "n_logged": len(values)}


def training_summary(method: str, history: list[dict]) -> dict:
    """Final values and first/last-quarter trends of the method's key metrics."""
    return {key: quarter_means(history, key) for key in TREND_METRICS.get(method, []) if quarter_means(history, key)}


def recommendations(methods: dict, evaluation: dict | None) -> list[str]:
    """Short statements backed by this run's numbers (no generic claims)."""
    recs = []
    rm = methods.get("reward", {}).get("heldout")
    if rm and rm.get("accuracy") is not None:
        acc = rm["accuracy"]
        verdict = "usable as a training signal" if acc >= 0.65 else "weak (below the course's 65% bar): train longer or on more data before trusting PPO/GRPO"
        recs.append(f"Reward model held-out accuracy {acc:.1%} on {rm['n_pairs']} pairs: {verdict}.")
    if evaluation:
        models = evaluation["models"]
        aligned = {k: v["summary"] for k, v in models.items() if k != "base"}
        if aligned:
            best = max(aligned, key=lambda k: aligned[k]["mean_reward"])
            s = aligned[best]
            base = models.get("base", {}).get("summary", {})
            wr = s.get("win_rate_vs_base")
            text = f"Highest mean reward: {best.upper()} ({s['mean_reward']:.3f} vs base {base.get('mean_reward', float('nan')):.3f}"
            if wr:
                text += f", win rate {wr['win_rate']:.0%} [95% CI {wr['ci_low']:.0%}-{wr['ci_high']:.0%}]"
                if wr["ci_low"] <= 0.5 <= wr["ci_high"]:
                    text += "; the interval contains 50%, so this run cannot distinguish it from base"
            recs.append(text + ").")
            lowest_kl = min(aligned, key=lambda k: aligned[k]["kl_to_base"])
            recs.append(f"Closest to the base model: {lowest_kl.upper()} (KL {aligned[lowest_kl]['kl_to_base']:.3f} nats/response); "
                        "largest drift: " + ", ".join(f"{k.upper()} {v['kl_to_base']:.3f}" for k, v in
                                                   sorted(aligned.items(), key=lambda kv: -kv[1]["kl_to_base"])) + ".")
            for k, v in aligned.items():
                dl = v["mean_length_tokens"] - base.get("mean_length_tokens", v["mean_length_tokens"])
                if dl >= 5:
                    recs.append(f"{k.upper()} answers are {dl:.0f} tokens longer than base on average: check whether the "
                                "reward model rewards length (verbosity bias, see plots/length_vs_reward.html).")
                elif dl <= -5:
                    recs.append(f"{k.upper()} answers are {-dl:.0f} tokens shorter than base on average: brevity is rewarded "
                                "here (concise-answer pairs in the data, and the missing-EOS penalty during RL).")
    times = {k: v.get("train_time_s") for k, v in methods.items() if v.get("train_time_s") is not None}
    if times:
        recs.append("Training time: " + ", ".join(f"{k.upper()} {t:.0f}s" for k, t in times.items())
                    + ". DPO needs no sampling and no reward model at training time; PPO and GRPO pay for generation.")
    return recs


def training_figure(method: str, history: list[dict]):
    """Live/report chart of one run: loss, reward and KL-type metrics against step (plotly ``Figure``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [("loss", ["loss"]),
              ("reward", ["accuracy", "rewards/chosen", "rewards/rejected", "rewards/margins", "objective/scores",
                          "objective/rlhf_reward", "reward"]),
              ("KL", ["objective/kl", "kl", "policy/approxkl_avg"]),
              ("method-specific", ["rewards/accuracies", "margin", "policy/clipfrac_avg", "val/clipfrac_avg",
                                   "reward_std", "clip_ratio/region_mean", "objective/entropy"])]
    keys = {k for row in history for k, v in row.items() if v is not None}
    panels = [(title, [k for k in ks if k in keys]) for title, ks in panels]
    panels = [p for p in panels if p[1]] or [("loss", [])]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels])
    for col, (_, ks) in enumerate(panels, 1):
        for k in ks:
            pts = [r for r in history if r.get(k) is not None]
            fig.add_trace(go.Scatter(x=[r["step"] for r in pts], y=[r[k] for r in pts], name=k, mode="lines+markers"),
                          row=1, col=col)
    fig.update_layout(height=320, title=f"{method.upper()} training ({len(history)} steps logged)",
                      legend=dict(orientation="h", y=-0.25), margin=dict(t=60, b=40))
    fig.update_xaxes(title_text="step")
    return fig


def figures(methods: dict, evaluation: dict | None) -> dict:
    """Every report chart as a plotly ``Figure``: training curves, mean reward by model, reward vs KL,
    length vs reward, per-category means (the last four need an evaluation)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs = {}
    curves = [(m, k) for m, keys in TREND_METRICS.items() for k in keys if methods.get(m, {}).get("history")]
    if curves:
        fig = make_subplots(rows=len(curves), cols=1, subplot_titles=[f"{m.upper()}: {k}" for m, k in curves])
        for i, (m, k) in enumerate(curves, 1):
            hist = [r for r in methods[m]["history"] if r.get(k) is not None]
            fig.add_trace(go.Scatter(x=[r["step"] for r in hist], y=[r[k] for r in hist], name=f"{m}:{k}"), row=i, col=1)
        fig.update_layout(height=220 * len(curves), showlegend=False, title="Training curves")
        figs["training_curves"] = fig
    if evaluation:
        models = evaluation["models"]
        names = list(models)
        s = {n: models[n]["summary"] for n in names}
        figs.update({
            "mean_reward": go.Figure(go.Bar(x=names, y=[s[n]["mean_reward"] for n in names],
                                            error_y=dict(array=[s[n]["reward_distribution"]["std"] for n in names])),
                                     layout=dict(title="Mean reward-model score by model (error bar: std)")),
            "reward_vs_kl": go.Figure([go.Scatter(x=[s[n]["kl_to_base"]], y=[s[n]["mean_reward"]], mode="markers+text",
                                                  text=[n], name=n, textposition="top center") for n in names],
                                      layout=dict(title="Reward vs KL to base", xaxis_title="KL (nats/response)",
                                                  yaxis_title="mean reward")),
            "length_vs_reward": go.Figure([go.Scatter(x=[x["length_tokens"] for x in models[n]["samples"]],
                                                      y=[x["reward"] for x in models[n]["samples"]], mode="markers", name=n)
                                           for n in names],
                                          layout=dict(title="Response length vs reward (verbosity bias)",
                                                      xaxis_title="tokens", yaxis_title="reward")),
            "per_category": go.Figure([go.Bar(name=n, x=list(s[n]["per_category_mean_reward"]),
                                              y=list(s[n]["per_category_mean_reward"].values())) for n in names],
                                      layout=dict(title="Mean reward by prompt category", barmode="group")),
        })
    return figs


def write_plots(out_dir: Path, methods: dict, evaluation: dict | None) -> list[str]:
    """``figures`` as HTML files in ``out_dir/plots`` (sharing one local ``plotly.min.js``). Returns the paths."""
    plot_dir = Path(out_dir) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures(methods, evaluation).items():
        written.append(str(plot_dir / f"{name}.html"))
        fig.write_html(written[-1], include_plotlyjs="directory")  # plotly.min.js once, beside them: works offline
    return written


def write_reports(out_dir: Path, setup: dict, methods: dict, evaluation: dict | None) -> dict:
    """Write the three JSON files and the plots into ``out_dir``; returns the report dict.

    Args:
        setup: model source, dataset load report and statistics, configs.
        methods: per method: ``train_time_s``, ``status``, ``history`` (metrics lines), ``run_dir`` and extras
            (``heldout`` for the reward model).
        evaluation: the output of ``alignment.evaluation.evaluate_models`` (or None if not run).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    method_report = {}
    for m, info in methods.items():
        entry = {k: v for k, v in info.items() if k != "history"}
        entry["training"] = training_summary(m, info.get("history", []))
        entry["final_metrics"] = info["history"][-1] if info.get("history") else None
        if "heldout" in entry and entry["heldout"]:
            entry["heldout"] = dict(entry["heldout"], errors=entry["heldout"]["errors"][:20],
                                    n_errors=len(entry["heldout"]["errors"]))
        method_report[m] = entry
    eval_summary = {n: r["summary"] for n, r in evaluation["models"].items()} if evaluation else None
    plots = write_plots(out_dir, methods, evaluation)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "setup": setup,
        "methods": method_report,
        "evaluation": {"decoding": evaluation["decoding"], "models": eval_summary} if evaluation else None,
        "recommendations": recommendations(methods, evaluation),
        "plots": plots,
    }
    paths = {"report": out_dir / "alignment_comparison_report.json",
             "evaluation": out_dir / "evaluation_results.json",
             "summary": out_dir / "final_summary.json"}
    write_json(paths["report"], report)
    write_json(paths["evaluation"], evaluation or {"models": {}})
    learned = report["recommendations"]
    write_json(paths["summary"], {
        "created": report["created"],
        "model": setup.get("model"),
        "dataset": setup.get("dataset", {}).get("source"),
        "artifacts": {"report": str(paths["report"]), "evaluation_results": str(paths["evaluation"]),
                      "adapters": {m: info.get("adapter") for m, info in methods.items() if info.get("adapter")},
                      "run_dirs": {m: info.get("run_dir") for m, info in methods.items()}, "plots": plots},
        "headline": {n: {"mean_reward": s["mean_reward"], "kl_to_base": s["kl_to_base"],
                         "mean_length_tokens": s["mean_length_tokens"],
                         "win_rate_vs_base": (s.get("win_rate_vs_base") or {}).get("win_rate")}
                     for n, s in (eval_summary or {}).items()},
        "training_time_s": {m: info.get("train_time_s") for m, info in methods.items()},
        "what_was_learned": learned,
    })
    return report


def length_histograms(rows: list[dict], tokenizer):
    """Overlaid histograms of prompt (chat-templated), chosen and rejected lengths in tokens."""
    import plotly.graph_objects as go

    from .data import _n_tokens, _prompt_tokens

    fig = go.Figure()
    fig.add_histogram(x=[_prompt_tokens(tokenizer, r["prompt"]) for r in rows], name="prompt", opacity=0.6)
    fig.add_histogram(x=[_n_tokens(tokenizer, r["chosen"]) for r in rows], name="chosen", opacity=0.6)
    fig.add_histogram(x=[_n_tokens(tokenizer, r["rejected"]) for r in rows], name="rejected", opacity=0.6)
    fig.update_layout(barmode="overlay", title=f"Token lengths ({len(rows)} pairs)", xaxis_title="tokens",
                      yaxis_title="pairs", height=320)
    return fig
