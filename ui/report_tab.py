"""Report tab: evaluate every trained model on the evaluation prompts and write the three JSON reports."""

from __future__ import annotations

import json

import gradio as gr

from .common import error_text, fmt

FILES = ("alignment_comparison_report.json", "evaluation_results.json", "final_summary.json")
PLOTS = ("mean_reward", "reward_vs_kl", "length_vs_reward", "per_category", "training_curves")


def _headline(report: dict) -> list[list]:
    rows = []
    for name, s in ((report.get("evaluation") or {}).get("models") or {}).items():
        wr = s.get("win_rate_vs_base")
        rows.append([name, fmt(s["mean_reward"]), fmt(s["kl_to_base"]), fmt(s["mean_length_tokens"], 1),
                     f"{s['eos_rate']:.0%}",
                     f"{wr['win_rate']:.0%} [{wr['ci_low']:.0%}–{wr['ci_high']:.0%}]" if wr else "-",
                     (report["methods"].get(name) or {}).get("train_time_s", "-")])
    return rows


def _view(manager, report: dict):
    figs = manager.report_figures()
    rm = (report["methods"].get("reward") or {}).get("heldout") or {}
    text = "\n".join(f"- {r}" for r in report.get("recommendations", []))
    if rm.get("accuracy") is not None:
        text = f"Reward model held-out accuracy: **{rm['accuracy']:.1%}** ({rm['n_pairs']} pairs)\n\n" + text
    files = [str(manager.output_dir / f) for f in FILES if (manager.output_dir / f).is_file()]
    return [text, _headline(report), files, *[figs.get(p) for p in PLOTS]]


def create_report_tab(manager) -> dict:
    gr.Markdown("## Report\nGenerates an answer from base and every trained policy for each evaluation prompt, scores "
                "them with the reward model, and writes `alignment_comparison_report.json`, "
                "`evaluation_results.json` and `final_summary.json` (plus HTML plots) to the output folder.")
    build = gr.Button("Run the evaluation and build the report", variant="primary", elem_id="report-build")
    status = gr.Markdown()
    headline = gr.Dataframe(headers=["model", "mean reward", "KL to base", "length", "EOS rate", "win rate vs base [95% CI]",
                                     "train s"], label="Headline")
    files = gr.File(label="Download the reports", file_count="multiple", interactive=False)
    with gr.Row():
        p_reward, p_kl = gr.Plot(label="Mean reward by model"), gr.Plot(label="Reward vs KL")
    with gr.Row():
        p_len, p_cat = gr.Plot(label="Length vs reward"), gr.Plot(label="Per category")
    p_curves = gr.Plot(label="Training curves")
    plots = [p_reward, p_kl, p_len, p_cat, p_curves]

    def on_build(progress=gr.Progress()):
        try:
            progress(0.0, desc="loading models")
            report = manager.build_report(progress=lambda f, d: progress(f, desc=d))
        except Exception as exc:
            return [error_text(exc)] + [gr.update()] * (2 + len(PLOTS))
        return _view(manager, report)

    build.click(on_build, None, [status, headline, files, *plots], api_name="build_report")
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
