"""The three report files, plus plotly charts.

- ``alignment_comparison_report.json``: setup, dataset statistics, per-method training metrics and time,
  evaluation summary per model (win rates vs base per evaluator: ``proxy_rm``, ``gold_rm``, ``rules``, and when
  available the LLM ``judge`` and the ``students``' arena votes, with the length-controlled win rate next to the raw
  one), caveats, recommendations derived from the numbers;
- ``evaluation_results.json``: per-model, per-prompt detail;
- ``final_summary.json``: artifacts and what was learned;
- ``plots/*.html``: training curves, mean reward by model, reward vs KL, length vs reward, per-category bars, the
  reward-vs-KL frontier of the final models per evaluator, and the over-optimisation curves (proxy, gold and rules
  scores against KL while training, from each run's film strip).

All JSON is strict (NaN/inf become null).
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from .registry import method_of
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

# alignment.evaluation.EVALUATORS, then the LLM judge (alignment.judge.judge_evaluation) and the students' arena
# votes (alignment.arena.students_evaluation), in the order shown
EVALUATORS = ("proxy_rm", "gold_rm", "rules", "judge", "students")
EVALUATOR_LABELS = {"proxy_rm": "proxy RM", "gold_rm": "gold RM", "rules": "rules", "judge": "LLM judge",
                    "students": "students"}

HEADLINE_COLUMNS = ["model", "mean reward", "KL to base [95% CI]", "length", "EOS rate",
                    *(f"win vs base: {EVALUATOR_LABELS[e]} [95% CI]" for e in EVALUATORS),
                    "LC win vs base: proxy RM [95% CI]", "steps done / budget", "status", "train s"]


def win_rates(summary: dict, key: str = "win_rate_vs_base") -> dict[str, dict]:
    """``{evaluator: result}`` of a model's summary for ``key`` (``win_rate_vs_base`` or ``lc_win_rate_vs_base``);
    a flat win rate, written before there were several evaluators, reads as ``proxy_rm``'s."""
    value = (summary or {}).get(key) or {}
    if "win_rate" in value or "lc_win_rate" in value:
        return {"proxy_rm": value}
    return {e: v for e, v in value.items() if isinstance(v, dict)}


def rate_text(result: dict | None, key: str = "win_rate") -> str:
    """``"55% [43%–67%]"``: a rate and its interval (``key``: ``win_rate`` or ``lc_win_rate``), "-" without one."""
    if not result or result.get(key) is None:
        return "-"
    return f"{result[key]:.0%} [{result['ci_low']:.0%}–{result['ci_high']:.0%}]"


def steps_text(info: dict | None) -> str:
    """``"10/30"``: steps a run logged out of its planned ``total_steps`` (``"?"`` where run_info lacks one)."""
    if not info:
        return "-"
    done, total = info.get("steps_done"), info.get("total_steps")
    return f"{'?' if done is None else done}/{'?' if total is None else total}"


def scorer_note(models: list[str]) -> str:
    """Which model produced the rewards of the evaluation, and whom it favours (``models``: evaluated names)."""
    favoured = [m.upper() for m in models if method_of(m) in REWARD_OPTIMISERS]
    note = "scored by the reward model trained in this run (its reward run, runs/reward/<run-id>)"
    if favoured:
        note += (f", which {' and '.join(favoured)} {'were' if len(favoured) > 1 else 'was'} trained to maximise: "
                 f"it favours {'them' if len(favoured) > 1 else 'it'}")
    if any(method_of(m) == "dpo" for m in models):
        note += "; DPO never saw it"
    return note


def proxy_caveat(evaluated: list[str], shown: list[str] = EVALUATORS) -> str:
    """The caveat that always goes with ``proxy_rm`` win rates: who was trained to maximise that reward model (a
    policy optimised against a learned reward exploits its errors, so the proxy overrates it: Gao, Schulman &
    Hilton 2023, "Scaling Laws for Reward Model Overoptimization"), and which independent evaluators to read next to
    it (``shown``: the evaluators in the report)."""
    others = [EVALUATOR_LABELS[e] for e in shown if e != "proxy_rm"]
    compare = (f" Read the {' and '.join(others)} win rate{'s' if len(others) > 1 else ''} next to it: no method "
               "was trained on " + ("them." if len(others) > 1 else "it.")) if others else ""
    favoured = [m.upper() for m in evaluated if method_of(m) in REWARD_OPTIMISERS]
    if not favoured:
        return ("The proxy RM is this run's own reward model (its reward run, runs/reward/<run-id>), trained on half "
                "of the preference pairs DPO learned from: a referee from the same data, not an independent one."
                + compare)
    plural = len(favoured) > 1
    return (f"{' and '.join(favoured)} {'were' if plural else 'was'} trained to maximise this reward model (proxy RM, "
            f"runs/reward/<run-id>); its win rates for {'them' if plural else 'it'} are biased upward: a policy optimised "
            "against a reward model learns to exploit its errors (Gao et al. 2023, reward model overoptimization)."
            + compare)


def judge_caveat(info: dict) -> str:
    """The caveat that goes with the ``judge`` win rates (``info``: ``evaluators["judge"]``): which model judged,
    that LLM judges favour longer answers and the first position (Zheng et al. 2023, Sec. 3.3; both orders were
    asked, a disagreement is a tie), and what the judging cost in requests, failures included."""
    text = (f"The LLM judge is {info.get('model', 'unknown')} ({info.get('server', '?')}): LLM judges favour longer "
            "answers (verbosity bias) and a position (each pair was judged in both orders, a disagreement counted "
            "as a tie; Zheng et al. 2023); read its length-controlled win rate (length_controlled) next to the raw "
            f"one. It cost {info.get('requests', '?')} requests, {info.get('failed_requests', '?')} failed")
    if info.get("reused_pairs"):
        text += (f" ({info['reused_pairs']} pair{'s' * (info['reused_pairs'] != 1)} judged for an earlier report, "
                 "reused without a request)")
    if info.get("failed_pairs"):
        text += f"; {info['failed_pairs']} pair{'s' * (info['failed_pairs'] != 1)} got no verdict and are left out"
    return text + "."


def students_caveat(info: dict) -> str:
    """The caveat that goes with the ``students`` win rates (``info``: ``evaluators["students"]``)."""
    n = info.get("votes", 0)
    text = (f"The students' win rates are Bradley-Terry predictions from {n} blind-arena vote{'s' * (n != 1)} (the "
            "probability of beating base, interval from resampling the votes), on answers to the students' own "
            "prompts, not the evaluation prompts, cast on the class models")
    if info.get("not_rated"):
        text += "; not rated: " + ", ".join(m.upper() for m in info["not_rated"]) + " (no votes, or not a class model)"
    return text + "."


def budget_caveats(methods: dict, evaluated: list[str]) -> list[str]:
    """Warnings that make a comparison of ``evaluated`` policies unfair or partial, from each run's run_info
    (``status``, ``steps_done``, ``total_steps``): a run that did not complete its budget, policies trained for
    different numbers of steps (or with different budgets), a reward model that stopped early, and trained
    policies missing from the comparison. Empty when every evaluated policy completed the same budget."""
    caveats = []
    pols = [m for m in evaluated if method_of(m) in POLICIES]  # sweep runs ("dpo(beta=0.05)") included
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
    """The report's headline table, one row per evaluated model, columns ``HEADLINE_COLUMNS``: mean reward (proxy
    RM), KL to base (nats/response) with its 95% interval, mean length (tokens), EOS rate, the win rate vs base of
    each evaluator (proxy RM, gold RM, rules, LLM judge, students; ties count half) and the length-controlled
    proxy-RM win rate, each with its 95% interval ("-" where an evaluator did not run), then the run's steps done /
    budget, status and training time (s). Base was not trained: its steps and status are "-" and "reference"."""
    def num(v, digits=3):
        return "-" if v is None else f"{v:.{digits}f}"

    rows = []
    for name, s in ((report.get("evaluation") or {}).get("models") or {}).items():
        wr, lc = win_rates(s), win_rates(s, "lc_win_rate_vs_base")
        info = (report.get("methods") or {}).get(name) or {}
        trained = name != "base"
        kl = num(s.get("kl_to_base"))
        if trained and s.get("kl_ci_low") is not None:
            kl += f" [{s['kl_ci_low']:.3f}–{s['kl_ci_high']:.3f}]"
        rows.append([name, num(s.get("mean_reward")), kl, num(s.get("mean_length_tokens"), 1),
                     f"{s['eos_rate']:.0%}" if s.get("eos_rate") is not None else "-",
                     *(rate_text(wr.get(e)) for e in EVALUATORS), rate_text(lc.get("proxy_rm"), "lc_win_rate"),
                     steps_text(info) if trained else "-",
                     (info.get("status") or "unknown") if trained else "reference",
                     num(info.get("train_time_s"), 0) if trained else "-"])
    return rows


def _win_counts(evaluation: dict, name: str, evaluator: str = "proxy_rm") -> tuple[int, int, int] | None:
    """(wins, ties, losses) of ``name`` against base by ``evaluator``, as the win rate counted them
    (``win_outcomes``: a tie is an identical answer or scores within the stated tolerance)."""
    summary = ((evaluation.get("models") or {}).get(name) or {}).get("summary") or {}
    wr = win_rates(summary).get(evaluator) or {}
    return (wr["wins"], wr["ties"], wr["losses"]) if "ties" in wr else None


# A proxy-RM win rate this far (10 points) above the gold RM's, for a model trained on the proxy, is called out.
GAP = 0.10


def evaluator_findings(evaluation: dict) -> list[str]:
    """Per aligned model, one line: its win rate vs base by every evaluator, the length-controlled proxy-RM win
    rate and the mean answer lengths, whether the proxy RM alone sees a win the independent evaluators do not,
    and, for a model trained on the proxy (``evaluation["evaluators"]["proxy_rm"]["trained"]``), a proxy win rate
    ``GAP`` or more above the gold RM's."""
    models = evaluation.get("models") or {}
    base_len = ((models.get("base") or {}).get("summary") or {}).get("mean_length_tokens")
    lines = []
    for name, res in models.items():
        s = res.get("summary") or {}
        wr, lc = win_rates(s), win_rates(s, "lc_win_rate_vs_base")
        if name == "base" or not wr:
            continue
        text = f"{name.upper()} vs base: " + ", ".join(f"{EVALUATOR_LABELS.get(e, e)} {rate_text(wr[e])}"
                                                      for e in EVALUATORS if e in wr)
        if lc.get("proxy_rm"):
            text += (f"; length-controlled (proxy RM) {rate_text(lc['proxy_rm'], 'lc_win_rate')} at "
                     f"{s['mean_length_tokens']:.1f} tokens per answer")
            if base_len is not None:
                text += f" vs base {base_len:.1f}"
        proxy, independent = wr.get("proxy_rm"), [e for e in ("gold_rm", "rules", "judge") if e in wr]
        if proxy and independent and proxy["ci_low"] > 0.5 and all(wr[e]["ci_low"] <= 0.5 for e in independent):
            text += ("; only the proxy RM sees a win: its bias toward the policies trained on it may be the "
                     "difference")
        trained_on_proxy = name in ((evaluation.get("evaluators") or {}).get("proxy_rm") or {}).get("trained", ())
        gold = wr.get("gold_rm")
        gap = proxy["win_rate"] - gold["win_rate"] if proxy and gold else 0.0
        if trained_on_proxy and gap >= GAP and proxy["ci_low"] > 0.5:  # a gap needs both scores
            text += (f"; the proxy RM it was trained on rates it {100 * gap:.0f} "
                     "points above the gold RM nobody trained on: that part of its win is not confirmed by an "
                     "independent judge, the signature of reward over-optimisation (Gao et al. 2023; the film "
                     "strips show whether the gap grew with the KL)")
        unsure = [e for e in independent if wr[e]["ci_low"] <= 0.5 <= wr[e]["ci_high"] and "half_width" in wr[e]]
        if unsure:  # say why an independent evaluator cannot tell the model from base
            r = wr[unsure[0]]
            text += (f"; inconclusive by the {' and the '.join(EVALUATOR_LABELS.get(e, e) for e in unsure)}: the 95% "
                     f"interval contains 50% (half-width about {max(wr[e]['half_width'] for e in unsure):.0%} over "
                     f"{r['n_prompts']} prompts x {r['n_samples']} answer{'s' * (r['n_samples'] != 1)}; "
                     + ", ".join(f"{EVALUATOR_LABELS.get(e, e)} ties {wr[e]['ties']} of {wr[e]['n']}" for e in unsure)
                     + "), so a difference of that size cannot be told from chance: "
                     + narrowing_text(max((wr[e] for e in unsure), key=lambda r: r["half_width"])))
        lines.append(text + ".")
    return lines


def narrowing_text(result: dict) -> str:
    """What would narrow a win rate's interval, from its variance components (``alignment.stats``): the share of
    the spread that comes from the prompts, and the projected half-width with twice the answers per prompt and
    with twice the prompts (the same extra cost each). Without components (one answer per prompt): the advice
    alone."""
    from .stats import projected_half_width

    n, m = result["n_prompts"], result["n_samples"]
    more_answers, more_prompts = projected_half_width(result, n, 2 * m), projected_half_width(result, 2 * n, m)
    if more_answers is None:
        return "more answers per prompt (--eval-samples) or more prompts narrow it"
    between, within = result["var_between_prompts"], result["var_within_prompt"]
    share = between / (between + within / m) if between + within > 0 else 0.0
    return (f"{share:.0%} of its spread comes from the prompts and the rest from the answers to each prompt, so "
            f"{2 * m} answers per prompt (--eval-samples) would narrow it to about {more_answers:.0%} and "
            f"{2 * n} prompts x {m} answers (--eval-prompts) to about {more_prompts:.0%} (projected from these "
            "answers)")


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
            wr = win_rates(s).get("proxy_rm")
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
            recs.extend(evaluator_findings(evaluation))
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
              ("proxy vs gold RM (raw scores)", ["objective/raw_scores", "gold/scores"]),
              ("rules (0-1)", ["rules/scores"]),
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
    """Every report chart as a plotly ``Figure``: training curves, mean reward by model, the reward-vs-KL frontier
    (``frontier_figure``), length vs reward, per-category means and win rates (these need an evaluation), and the
    over-optimisation curves (``overoptimization_figure``, from the runs' film strips)."""
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
            "length_vs_reward": go.Figure([go.Scatter(x=[x["length_tokens"] for x in models[n]["samples"]],
                                                      y=[x["reward"] for x in models[n]["samples"]], mode="markers", name=n)
                                           for n in names],
                                          layout=dict(title="Response length vs reward (verbosity bias)",
                                                      xaxis_title="tokens", yaxis_title="reward")),
            "per_category": go.Figure([go.Bar(name=n, x=list(s[n]["per_category_mean_reward"]),
                                              y=list(s[n]["per_category_mean_reward"].values())) for n in names],
                                      layout=dict(title="Mean reward by prompt category", barmode="group")),
        })
        if any(win_rates(s[n]) for n in names):
            figs["win_rates"] = win_rate_figure(s)
        figs["reward_vs_kl"] = frontier_figure(s)
    curves = film_strip_curves(methods)
    if curves:
        figs["overoptimization"] = overoptimization_figure(curves)
    return figs


def win_rate_figure(summaries: dict):
    """Win rate vs base of each aligned model by each evaluator, and the length-controlled proxy-RM win rate, with
    95% intervals as error bars and the 50% line (plotly ``Figure``). ``summaries``: ``{model: summary}``."""
    import plotly.graph_objects as go

    aligned = [n for n in summaries if win_rates(summaries[n])]
    series = [(f"{EVALUATOR_LABELS[e]}", e, "win_rate_vs_base", "win_rate") for e in EVALUATORS]
    series.append(("LC proxy RM", "proxy_rm", "lc_win_rate_vs_base", "lc_win_rate"))
    fig = go.Figure()
    for label, e, key, value in series:
        res = [win_rates(summaries[n], key).get(e) for n in aligned]
        if not any(res):
            continue
        y = [r[value] if r else None for r in res]
        fig.add_trace(go.Bar(name=label, x=[n.upper() for n in aligned], y=y, error_y=dict(
            type="data", symmetric=False, array=[r["ci_high"] - r[value] if r else 0 for r in res],
            arrayminus=[r[value] - r["ci_low"] if r else 0 for r in res])))
    fig.add_hline(y=0.5, line_dash="dash", annotation_text="as good as base")
    fig.update_layout(title="Win rate vs base by evaluator (error bars: 95% interval; ties count half)",
                      barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%"))
    return fig


def film_strip_curves(methods: dict) -> dict[str, list[dict]]:
    """Per policy run with a film strip (``alignment.trainers.film_strip``), its frames' means in step order:
    ``{method: [{"step", "kl", "proxy", "gold", "rules", "length_tokens"}, ...]}`` (a score is None where no such
    referee watched)."""
    from .trainers.film_strip import frame_means, read_film_strip

    curves = {}
    for m, info in methods.items():
        frames = read_film_strip(info["run_dir"]) if info.get("run_dir") else []
        if frames:
            curves[m] = frame_means(frames)
    return curves


OVEROPT_PANELS = (("proxy", "proxy RM (optimised)"), ("gold", "gold RM (held out)"), ("rules", "rules (0-1)"))


def overoptimization_figure(curves: dict[str, list[dict]]):
    """The Gao et al. 2023 curve of each run (plotly ``Figure``): the change of the proxy score, the gold score and
    the rules score since the run's first frame (the base policy), against the KL to base, one line per method,
    one panel per referee (stacked, so it reads on a phone). Points are film-strip frames (the step is in the
    hover text). ``curves``: ``film_strip_curves`` output. Over-optimisation shows as a proxy line that keeps
    climbing while the gold and rules lines flatten or fall."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = [(k, t) for k, t in OVEROPT_PANELS if any(p[0].get(k) is not None for p in curves.values() if p)]
    panels = panels or list(OVEROPT_PANELS[:1])
    fig = make_subplots(rows=len(panels), cols=1, subplot_titles=[f"Δ {t}" for _, t in panels],
                        vertical_spacing=0.12, shared_xaxes=True)
    colors = {"dpo": "#1f77b4", "ppo": "#d62728", "grpo": "#2ca02c"}
    for i, (key, _) in enumerate(panels, 1):
        for m, pts in curves.items():
            pts = [p for p in pts if p.get(key) is not None and p.get("kl") is not None]
            if not pts:
                continue
            y0 = pts[0][key]
            fig.add_trace(go.Scatter(x=[p["kl"] for p in pts], y=[p[key] - y0 for p in pts], mode="lines+markers",
                                     name=m.upper(), legendgroup=m, showlegend=i == 1,
                                     line_color=colors.get(m), text=[f"step {p['step']}" for p in pts],
                                     hovertemplate="%{text}<br>KL %{x:.2f} nats<br>change %{y:.3f}"), row=i, col=1)
        fig.add_hline(y=0, line_dash="dot", line_color="grey", row=i, col=1)
    fig.update_xaxes(title_text="KL to base (nats per answer)", row=len(panels), col=1)
    fig.update_layout(height=230 * len(panels) + 120, title=dict(
        text="Scores vs KL while training", x=0, xanchor="left", font_size=13),
        legend=dict(orientation="h", x=0, y=-0.12), margin=dict(l=40, r=10, t=70, b=40))
    return fig


def frontier_figure(summaries: dict):
    """Reward vs KL of the final models (plotly ``Figure``): one point per evaluated model (base at KL 0), its mean
    score by each evaluator against its KL to base with the KL's 95% interval, one panel per evaluator (stacked,
    sharing the KL axis, so it reads on a phone), one colour per model with a legend (labels on the points would
    overlap where models sit close); the best trade-off is up and to the left. ``summaries``: ``{model: evaluation
    summary}``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    def score(n: str, e: str):
        s = summaries[n]
        return (s.get("mean_score") or {}).get(e, s.get("mean_reward") if e == "proxy_rm" else None)

    evaluators = [e for e in EVALUATORS if any(score(n, e) is not None for n in summaries)] or ["proxy_rm"]
    fig = make_subplots(rows=len(evaluators), cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=[f"mean {EVALUATOR_LABELS[e]} score" for e in evaluators])
    palette = go.Figure().layout.template.layout.colorway or ("#636efa", "#ef553b", "#00cc96", "#ab63fa")
    for k, (n, s) in enumerate(summaries.items()):
        kl, color = s["kl_to_base"], palette[k % len(palette)]  # one colour per model in every panel
        err = dict(type="data", symmetric=False, array=[max(0.0, (s.get("kl_ci_high") or kl) - kl)],
                   arrayminus=[max(0.0, kl - (s.get("kl_ci_low") or kl))])
        for i, e in enumerate(evaluators, 1):
            if score(n, e) is not None:
                fig.add_trace(go.Scatter(x=[kl], y=[score(n, e)], mode="markers", name=n.upper(), legendgroup=n,
                                         showlegend=i == 1, marker=dict(size=10, color=color),
                                         error_x=dict(err, color=color)), row=i, col=1)
    fig.update_xaxes(title_text="KL to base (nats per answer)", row=len(evaluators), col=1)
    fig.update_layout(title=dict(text="Reward vs KL, final models (bars: KL 95% CI)", x=0,
                                 xanchor="left", font_size=13), height=200 * len(evaluators) + 150,
                      legend=dict(orientation="h", x=0, y=-0.1), margin=dict(l=40, r=10, t=70, b=40))
    return fig


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

    The report also holds ``caveats`` (``budget_caveats``: unequal or unfinished training budgets, and
    ``proxy_caveat`` whenever proxy-RM win rates are shown, ``judge_caveat`` and ``students_caveat`` when those
    evaluators ran, and one when evaluation prompts are also training prompts, ``evaluation["eval_prompts_in_training"]``
    from ``alignment.data.seen_in_training``), ``scored_by`` (``scorer_note``), ``evaluators`` (who
    trained on which evaluator, ``alignment.evaluation.evaluator_info``), ``length_controlled`` (per model: mean
    length and the length-controlled win rate per evaluator next to the raw one) and ``headline_table``
    (``{"columns", "rows"}``, ``headline_rows``), which the app shows.
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
    shown = [e for e in EVALUATORS if any(e in win_rates(s) for s in (eval_summary or {}).values())]
    if "proxy_rm" in shown:
        report["caveats"].append(proxy_caveat(evaluated, shown))
    external = (evaluation or {}).get("evaluators") or {}
    if "judge" in external:
        report["caveats"].append(judge_caveat(external["judge"]))
    if "students" in external:
        report["caveats"].append(students_caveat(external["students"]))
    seen = (evaluation or {}).get("eval_prompts_in_training") or {}
    if seen.get("count"):
        report["caveats"].append(
            f"{seen['count']} of the {seen['of']} evaluation prompts are also training prompts (for example "
            f"{textwrap.shorten(seen['prompts'][0], 80)!r}): a model may have learnt their answers, so the win rates overstate how it "
            "answers questions it has not seen. Evaluate on prompts outside the training data.")
    flaw = (method_report.get("reward") or {}).get("reward_flaw")
    if flaw:
        report["caveats"].append(
            f"The proxy reward model was trained with a planted flaw ({flaw['flaw']}: {flaw['relabelled_pairs']} of "
            f"its {flaw['train_pairs']} pairs relabelled so the longer answer wins), on purpose, for the "
            "reward-hacking exercise: its scores and the proxy-RM win rates reward length. Read the gold RM and the "
            "rules, and the over-optimisation chart.")
    report["scored_by"] = scorer_note(evaluated) if evaluation else None
    report["evaluators"] = (evaluation or {}).get("evaluators")
    report["length_controlled"] = {n: {"mean_length_tokens": s.get("mean_length_tokens"), "by_evaluator": {
        e: {k: lc.get(k) for k in ("lc_win_rate", "ci_low", "ci_high", "raw_win_rate", "length_coef")}
        for e, lc in win_rates(s, "lc_win_rate_vs_base").items()}} for n, s in (eval_summary or {}).items()}
    report["headline_table"] = {"columns": HEADLINE_COLUMNS, "rows": headline_rows(report)}
    report["overoptimization"] = {  # the film strips' means per frame (the Gao et al. curve), per policy run
        "curves": film_strip_curves(methods),
        "about": "Each point: a run's answers to the same fixed prompts at one step (film_strip.jsonl in its run "
                 "directory), scored by the proxy RM, the gold RM and the rules, with the KL to base in nats. "
                 "Over-optimisation (Gao et al. 2023) shows as a proxy score that climbs while the gold score "
                 "and the rules fall."}
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
                         "win_rate_vs_base": {e: r.get("win_rate") for e, r in win_rates(s).items()},
                         "lc_win_rate_vs_base": {e: r.get("lc_win_rate")
                                                 for e, r in win_rates(s, "lc_win_rate_vs_base").items()}}
                     for n, s in (eval_summary or {}).items()},
        "caveats": report["caveats"],
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
