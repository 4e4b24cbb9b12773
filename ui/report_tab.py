"""Report tab: evaluate every trained model on the evaluation prompts and write the three JSON reports.

One progress bar (on the status line only), fed per batch by the evaluation with the phase named; a headline
table with each method's steps done / budget and status; the caveats that limit the comparison (unequal or
unfinished budgets, the reward model that scored) above the findings; report files downloadable by their name
as well as their size (``REPORT_CSS``).
"""

from __future__ import annotations

import json

import gradio as gr

from alignment.report import HEADLINE_COLUMNS

from .common import REPORT, error_text, md_escape

FILES = ("alignment_comparison_report.json", "evaluation_results.json", "final_summary.json")
PLOTS = ("mean_reward", "reward_vs_kl", "length_vs_reward", "per_category", "training_curves")
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


def _status_text(report: dict) -> str:
    """Markdown above the table: who scored, the caveats, then the findings (the reward model's held-out accuracy
    first, as ``alignment.report.recommendations`` orders them)."""
    parts = []
    if report.get("scored_by"):
        parts.append(f"Rewards are {md_escape(report['scored_by'])}.")
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


def _view(manager, report: dict):
    figs = manager.report_figures()
    rows = (report.get("headline_table") or {}).get("rows") or []
    files = [str(manager.output_dir / f) for f in FILES if (manager.output_dir / f).is_file()]
    return [_status_text(report), rows, files, *[figs.get(p) for p in PLOTS]]


def create_report_tab(manager) -> dict:
    gr.HTML(f"<style>{REPORT_CSS}</style>", elem_id="report-style", padding=False)
    gr.Markdown("## Report\nGenerates an answer from base and every trained policy for each evaluation prompt, scores "
                "them with the reward model, and writes `alignment_comparison_report.json`, "
                "`evaluation_results.json` and `final_summary.json` (plus HTML plots) to the output folder.")
    build = gr.Button("Run the evaluation and build the report", variant="primary", elem_id="report-build")
    status = gr.Markdown(elem_id="report-status", elem_classes=["report-status"])
    headline = gr.Dataframe(headers=HEADERS, label="Headline: rewards scored by this run's reward model; steps done "
                                                   "/ budget and status of each training run",
                            elem_id="report-headline", elem_classes=["report-headline"], interactive=False)
    files = gr.File(label="Download the reports (click a name)", file_count="multiple", interactive=False,
                    elem_id="report-files", elem_classes=["report-files"])
    with gr.Row():
        p_reward, p_kl = gr.Plot(label="Mean reward by model"), gr.Plot(label="Reward vs KL")
    with gr.Row():
        p_len, p_cat = gr.Plot(label="Length vs reward"), gr.Plot(label="Per category")
    p_curves = gr.Plot(label="Training curves")
    plots = [p_reward, p_kl, p_len, p_cat, p_curves]

    def on_build(progress=gr.Progress()):
        try:
            progress(0.0, desc="starting the evaluation")
            report = manager.build_report(progress=lambda f, d: progress(f, desc=d))
        except Exception as exc:
            return [error_text(exc)] + [gr.update()] * (2 + len(PLOTS))
        return _view(manager, report)

    # one progress bar, on the status line: without show_progress_on Gradio draws it over each of the 8 outputs
    build.click(on_build, None, [status, headline, files, *plots], api_name="build_report", show_progress_on=[status],
                **REPORT)
    return {"build": build, "status": status, "headline": headline, "files": files, "plots": plots}


def refresh(manager) -> list:
    """Values for the tab when the page opens: the last report on disk, if any."""
    path = manager.output_dir / FILES[0]
    if not path.is_file():
        return ["No report yet."] + [gr.update()] * (2 + len(PLOTS))
    try:
        return _view(manager, json.loads(path.read_text(encoding="utf-8")))
    except Exception as exc:
        return [error_text(exc)] + [gr.update()] * (2 + len(PLOTS))
