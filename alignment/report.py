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


POLICIES = ("dpo", "ppo", "grpo")
REWARD_OPTIMISERS = ("ppo", "grpo")  # trained to maximise the very reward model the evaluation scores with

HEADLINE_COLUMNS = ["model", "mean reward", "KL to base", "length", "EOS rate", "win rate vs base [95% CI]",
                    "steps done / budget", "status", "train s"]


def steps_text(info: dict | None) -> str:
    """``"10/30"``: steps a run logged out of its planned ``total_steps`` (``"?"`` where run_info lacks one)."""
    if not info:
        return "-"
    done, total = info.get("steps_done"), info.get("total_steps")
    return f"{'?' if done is None else done}/{'?' if total is None else total}"


def scorer_note(models: list[str]) -> str:
    """Which model produced the rewards of the evaluation, and whom it favours (``models``: evaluated names)."""
    favoured = [m.upper() for m in REWARD_OPTIMISERS if m in models]
    note = "scored by the reward model trained in this run (runs/reward)"
    if favoured:
        note += (f", which {' and '.join(favoured)} {'were' if len(favoured) > 1 else 'was'} trained to maximise: "
                 f"it favours {'them' if len(favoured) > 1 else 'it'}")
    if "dpo" in models:
        note += "; DPO never saw it"
    return note


def budget_caveats(methods: dict, evaluated: list[str]) -> list[str]:
    """Warnings that make a comparison of ``evaluated`` policies unfair or partial, from each run's run_info
    (``status``, ``steps_done``, ``total_steps``): a run that did not complete its budget, policies trained for
    different numbers of steps (or with different budgets), a reward model that stopped early, and trained
    policies missing from the comparison. Empty when every evaluated policy completed the same budget."""
    caveats = []
    pols = [m for m in POLICIES if m in evaluated]
    for m in ["reward", *pols]:
        info = methods.get(m) or {}
        done, total, status = info.get("steps_done"), info.get("total_steps"), info.get("status")
        if status not in (None, "completed") or (done is not None and total is not None and done < total):
            who = "The reward model (which scores every answer)" if m == "reward" else m.upper()
            caveats.append(f"{who} did not complete its training: status {status or 'unknown'}, "
                           f"{steps_text(info)} steps.")
    budgets = {m: ((methods.get(m) or {}).get("steps_done"), (methods.get(m) or {}).get("total_steps")) for m in pols}
    if len({b[0] for b in budgets.values()}) > 1 or len({b[1] for b in budgets.values()}) > 1:
        caveats.append("Unequal training budgets: " + ", ".join(f"{m.upper()} {steps_text(methods.get(m))} steps"
                                                                   for m in pols)
                       + ". The comparison is unfair: a method that trained more steps had more chance to move; "
                         "train every method with the same number of steps before ranking them.")
    for m in POLICIES:
        info = methods.get(m) or {}
        if m not in evaluated and info.get("status") == "failed":
            caveats.append(f"{m.upper()} failed ({info.get('error') or 'see its error.log'}) and is not in the "
                           "comparison.")
    return caveats


def headline_rows(report: dict) -> list[list]:
    """The report's headline table, one row per evaluated model, columns ``HEADLINE_COLUMNS``: mean reward, KL to
    base (nats/response), mean length (tokens), EOS rate, win rate vs base with its 95% interval (ties count
    half), then the run's steps done / budget, status and training time (s). Base was not trained: its steps and
    status are "-" and "reference"."""
    def num(v, digits=3):
        return "-" if v is None else f"{v:.{digits}f}"

    rows = []
    for name, s in ((report.get("evaluation") or {}).get("models") or {}).items():
        wr = s.get("win_rate_vs_base")
        info = (report.get("methods") or {}).get(name) or {}
        trained = name != "base"
        rows.append([name, num(s.get("mean_reward")), num(s.get("kl_to_base")), num(s.get("mean_length_tokens"), 1),
                     f"{s['eos_rate']:.0%}" if s.get("eos_rate") is not None else "-",
                     f"{wr['win_rate']:.0%} [{wr['ci_low']:.0%}–{wr['ci_high']:.0%}]" if wr else "-",
                     steps_text(info) if trained else "-",
                     (info.get("status") or "unknown") if trained else "reference",
                     num(info.get("train_time_s"), 0) if trained else "-"])
    return rows


def _win_counts(evaluation: dict, name: str) -> tuple[int, int, int] | None:
    """(wins, ties, losses) of ``name`` against base, as the win rate counted them (``win_outcomes``: a tie is
    an identical answer or scores within the stated tolerance)."""
    wr = ((evaluation.get("models") or {}).get(name, {}).get("summary") or {}).get("win_rate_vs_base") or {}
    return (wr["wins"], wr["ties"], wr["losses"]) if "ties" in wr else None


def recommendations(methods: dict, evaluation: dict | None) -> list[str]:
    """Short statements backed by this run's numbers (no generic claims), with the caveats that limit them
    (``budget_caveats``) and the model that scored the answers."""
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
            level = [k for k in aligned if k != best and s["mean_reward"] - aligned[k]["mean_reward"] < 1e-3]
            if level:  # a difference below the third decimal is float noise, not a winner
                recs.append(f"Highest mean reward ({scorer_note(list(aligned))}): no winner, "
                            f"{' and '.join(m.upper() for m in [best, *level])} are level at {s['mean_reward']:.3f}.")
            else:
                text = (f"Highest mean reward ({scorer_note(list(aligned))}): {best.upper()}, "
                        f"{steps_text(methods.get(best))} steps ({s['mean_reward']:.3f} vs base "
                        f"{base.get('mean_reward', float('nan')):.3f}")
                if wr:
                    text += f", win rate {wr['win_rate']:.0%} [95% CI {wr['ci_low']:.0%}-{wr['ci_high']:.0%}]"
                    counts = _win_counts(evaluation, best)
                    if counts:
                        won, tied, lost = counts
                        text += (f" from {won} win{'s' * (won != 1)}, {tied} tie{'s' * (tied != 1)} (counted as half; "
                                 f"a tie is {wr['tie_rule']}) "
                                 f"and {lost} loss{'es' * (lost != 1)}")
                    if wr["ci_low"] <= 0.5 <= wr["ci_high"]:
                        text += "; the interval contains 50%, so this run cannot distinguish it from base"
                recs.append(text + ").")
            recs.extend(budget_caveats(methods, list(aligned)))
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
    """Live/report chart of one run against step (plotly ``Figure``): small multiples, one panel per group of
    metrics on a similar scale, so that no curve is flattened by another's axis (PPO's entropy, a sum over an
    answer's tokens of about 30 nats, next to clip fractions in [0, 1]; the per-sequence KL next to the per-token
    approximate KL of the update).

    Panels appear only for metrics the run logged, in a grid of up to 2 columns (rows as needed, about 210 px
    each) with the legend below and a short title on the left, which reads at 390 px wide (a phone) as well as
    on a desktop.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = [("loss", ["loss"]),
              ("reward", ["rewards/chosen", "rewards/rejected", "rewards/margins", "objective/scores",
                          "objective/rlhf_reward", "reward"]),
              ("accuracy", ["accuracy", "rewards/accuracies"]),
              ("margin", ["margin"]),
              ("KL", ["objective/kl", "kl"]),
              ("approx. KL (update)", ["policy/approxkl_avg"]),
              ("clip fractions", ["policy/clipfrac_avg", "val/clipfrac_avg", "clip_ratio/region_mean"]),
              ("entropy", ["objective/entropy", "entropy"]),
              ("reward std", ["reward_std"])]
    keys = {k for row in history for k, v in row.items() if v is not None}
    panels = [(title, [k for k in ks if k in keys]) for title, ks in groups]
    panels = [p for p in panels if p[1]] or [("loss", [])]
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    row_px = 210
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t for t, _ in panels], horizontal_spacing=0.14,
                        vertical_spacing=min(0.3, 90 / (row_px * rows)))
    for i, (_, ks) in enumerate(panels):
        row, col = divmod(i, cols)
        for k in ks:
            pts = [h for h in history if h.get(k) is not None]
            fig.add_trace(go.Scatter(x=[h["step"] for h in pts], y=[h[k] for h in pts], name=k, mode="lines+markers",
                                     marker_size=5), row=row + 1, col=col + 1)
    fig.update_annotations(font_size=12)  # the subplot titles
    logged = f"{len(history)} step{'' if len(history) == 1 else 's'} logged"
    fig.update_layout(height=row_px * rows + 150, title=dict(text=f"{method.upper()}: {logged}", x=0, xanchor="left",
                                                              font_size=13),
                      legend=dict(orientation="h", x=0, xanchor="left", y=-60 / (row_px * rows), yanchor="top",
                                  font_size=11),
                      margin=dict(l=40, r=10, t=60, b=40))
    last = max([h["step"] for h in history] or [1])
    dtick = next(d for d in (1, 2, 5, 10, 20, 50, 100, 200, 500) if last / d <= 6 or d == 500)  # whole steps
    fig.update_xaxes(title_text="step", title_font_size=11, title_standoff=4, tickfont_size=10, tick0=0, dtick=dtick)
    fig.update_yaxes(tickfont_size=10)
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
        methods: per method: ``train_time_s``, ``status``, ``steps_done``, ``total_steps``, ``history`` (metrics
            lines), ``run_dir`` and extras (``heldout`` for the reward model).
        evaluation: the output of ``alignment.evaluation.evaluate_models`` (or None if not run).

    The report also holds ``caveats`` (``budget_caveats``: unequal or unfinished training budgets), ``scored_by``
    (``scorer_note``) and ``headline_table`` (``{"columns", "rows"}``, ``headline_rows``), which the app shows.
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
    evaluated = [n for n in (eval_summary or {}) if n != "base"]
    report["caveats"] = budget_caveats(method_report, evaluated) if evaluation else []
    report["scored_by"] = scorer_note(evaluated) if evaluation else None
    report["headline_table"] = {"columns": HEADLINE_COLUMNS, "rows": headline_rows(report)}
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
