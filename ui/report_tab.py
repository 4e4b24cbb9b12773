"""Report tab: evaluate every trained model on the evaluation prompts and write the three JSON reports.

One progress bar (on the status line only), fed per batch by the evaluation with the phase named; a headline
table with each method's steps done / budget and status and its win rate vs base by every evaluator (proxy RM,
gold RM, rules, and when available the LLM judge and the students' arena votes, side by side) with the
length-controlled one; the evaluators and who was trained on which; the caveats that limit
the comparison (unequal or unfinished budgets, the proxy reward model's bias) above the findings; report files
downloadable by their name as well as their size (``REPORT_CSS``).
"""

from __future__ import annotations

import json

import gradio as gr

from alignment.report import EVALUATOR_LABELS, HEADLINE_COLUMNS, headline_rows

from .common import FREE, REPORT, downloadable, error_text, login, md_escape

FILES = ("alignment_comparison_report.json", "evaluation_results.json", "final_summary.json")
PLOTS = ("win_rates", "mean_reward", "reward_vs_kl", "length_vs_reward", "per_category", "training_curves",
         "overoptimization")
HEADERS = HEADLINE_COLUMNS

# Scoped to the tab's elem_classes. Gradio 6.31's gr.File links only the size ("1.2 KB ⇣") and leaves the name as
# plain text; the link (made static: Gradio positions it inline) gets an ::after box over its whole row, so
# clicking the name downloads too; a long name wraps instead of being cut to "alignme…", and the remove button
# (meaningless in a list of reports) is hidden. Headline cells break lines only between words (the table scrolls
# sideways on a phone).
REPORT_CSS = """
.report-files tr.file {position: relative;}
.report-files td.download a {position: static !important;}
.report-files td.download a::after {content: ""; position: absolute; inset: 0;}
.report-files td.filename {cursor: pointer; color: var(--link-text-color, #2563eb); text-decoration: underline;
  display: table-cell; overflow-wrap: anywhere;}
.report-files td.filename .stem {display: inline; white-space: normal;}
.report-files td.download {min-width: 5.5rem;}
.report-files .label-clear-button {display: none;}
.report-headline th, .report-headline td {word-break: normal; overflow-wrap: normal; hyphens: none;}
.report-status {min-height: 2.5em;}
"""


def _evaluators_text(evaluators: dict) -> str:
    """One line per evaluator of the evaluation: its name, what it is and the evaluated methods trained on it."""
    lines = []
    for name, info in evaluators.items():
        trained = ", ".join(m.upper() for m in info.get("trained") or [])
        precision = f"; scores in {md_escape(info['precision'])}" if info.get("precision") else ""
        lines.append(f"- **{md_escape(EVALUATOR_LABELS.get(name, name))}**: {md_escape(info.get('description', ''))}"
                     + (f" (trained on it: {trained}{precision})" if trained
                        else f" (no evaluated method was trained on it{precision})"))
    return ("**Win rates vs base by evaluator** (ties count half; LC = length-controlled: the win rate at equal "
            "answer length)\n" + "\n".join(lines))


def _status_text(report: dict) -> str:
    """Markdown above the table: who scored, the evaluators, the caveats, then the findings (the reward model's
    held-out accuracy first, as ``alignment.report.recommendations`` orders them)."""
    parts = []
    if report.get("scored_by"):
        parts.append(f"Rewards are {md_escape(report['scored_by'])}.")
    if report.get("evaluators"):
        parts.append(_evaluators_text(report["evaluators"]))
    caveats = report.get("caveats") or []
    if caveats:
        parts.append("**⚠️ Caveats: read these before comparing the methods**\n"
                     + "\n".join(f"- {md_escape(c)}" for c in caveats))
    findings = [r for r in report.get("recommendations", []) if r not in caveats]
    if findings:
        parts.append("**Findings**\n" + "\n".join(f"- {md_escape(r)}" for r in findings))
    if "headline_table" not in report:
        parts.append("This report was written by an earlier version of the app: build it again to see each "
                     "method's steps, budget and status.")
    return "\n\n".join(parts)


def _view(manager, report: dict, user=None):
    """The tab's outputs for ``user``'s report (in their workspace; the class's for a teacher)."""
    figs = manager.report_figures(user)
    table = report.get("headline_table") or {}
    rows = table.get("rows") or []
    if table and table.get("columns") != HEADERS:  # written before the columns changed (e.g. judge, students)
        rows = headline_rows(report)
    folder = manager.report_dir(user)
    files = downloadable([folder / f for f in FILES if (folder / f).is_file()])
    return [_status_text(report), rows, files, *[figs.get(p) for p in PLOTS]]


def create_report_tab(manager) -> dict:
    gr.HTML(f"<style>{REPORT_CSS}</style>", elem_id="report-style", padding=False)
    gr.Markdown("## Report\nGenerates an answer from base and every trained policy for each evaluation prompt, scores "
                "them with the reward model, and writes `alignment_comparison_report.json`, "
                "`evaluation_results.json` and `final_summary.json` (plus HTML plots) to your workspace (the "
                "class folder for a teacher). By default it compares the class models; pick your own runs below.")
    with gr.Accordion("Which runs: the class models, or your own", open=False, elem_id="report-runs"):
        with gr.Row():
            picks = {m: gr.Dropdown([("class model", "class")], value="class", label=label, elem_id=f"report-run-{m}",
                                    allow_custom_value=False)
                     for m, label in (("dpo", "DPO"), ("ppo", "PPO"), ("grpo", "GRPO"), ("reward", "Reward model (scores)"))}
            refresh_runs = gr.Button("↻ my runs", scale=0)
    build = gr.Button("Run the evaluation and build the report", variant="primary", elem_id="report-build")
    status = gr.Markdown(elem_id="report-status", elem_classes=["report-status"])
    headline = gr.Dataframe(headers=HEADERS, label="Headline: mean reward by this run's reward model (proxy RM); win "
                                                   "rate vs base by each evaluator; steps done / budget and status "
                                                   "of each training run",
                            elem_id="report-headline", elem_classes=["report-headline"], interactive=False)
    files = gr.File(label="Download the reports (click a name)", file_count="multiple", interactive=False,
                    elem_id="report-files", elem_classes=["report-files"])
    p_win = gr.Plot(label="Win rate vs base by evaluator")
    with gr.Row():
        p_reward, p_kl = gr.Plot(label="Mean reward by model"), gr.Plot(label="Reward vs KL frontier")
    with gr.Row():
        p_len, p_cat = gr.Plot(label="Length vs reward"), gr.Plot(label="Per category")
    p_over = gr.Plot(label="Over-optimisation: proxy, gold and rules scores vs KL while training (film strips)")
    p_curves = gr.Plot(label="Training curves")
    plots = [p_win, p_reward, p_kl, p_len, p_cat, p_curves, p_over]

    def on_build(request: gr.Request, *chosen, progress=gr.Progress()):
        user = login(request)
        try:
            progress(0.0, desc="starting the evaluation")
            report = manager.build_report(progress=lambda f, d: progress(f, desc=d), user=user,
                                          runs=dict(zip(picks, chosen)))
        except Exception as exc:
            return [error_text(exc)] + [gr.update()] * (2 + len(PLOTS))
        return _view(manager, report, user)

    def run_options(request: gr.Request):
        choices = manager.run_choices(login(request))
        return [gr.update(choices=choices[m]) for m in picks]

    refresh_runs.click(run_options, None, list(picks.values()), api_visibility="private", **FREE)
    # one progress bar, on the status line: without show_progress_on Gradio draws it over each of the 9 outputs
    build.click(on_build, list(picks.values()), [status, headline, files, *plots], api_name="build_report",
                show_progress_on=[status], **REPORT)
    return {"build": build, "status": status, "headline": headline, "files": files, "plots": plots, "picks": picks,
            "run_options": run_options}


def refresh(manager, user=None) -> list:
    """Values for the tab when the page opens: ``user``'s last report on disk (the class's for a teacher), if any."""
    path = manager.report_dir(user) / FILES[0]
    if not path.is_file():
        return ["No report yet."] + [gr.update()] * (2 + len(PLOTS))
    try:
        return _view(manager, json.loads(path.read_text(encoding="utf-8")), user)
    except Exception as exc:
        return [error_text(exc)] + [gr.update()] * (2 + len(PLOTS))
