"""Learn tab: what each method optimises, its formula, and the project's own code that computes it.

Text, formulas and code come from ``alignment.lessons`` (the notebook shows the same source).
"""

from __future__ import annotations

import gradio as gr

from alignment.lessons import LESSONS, comparison_markdown, lesson_code, lesson_markdown

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def create_learn_tab(manager) -> dict:
    comps = {}
    gr.Markdown("## How a model learns from preferences\n"
                "People compare answers; a **reward model** learns to score answers the way they would; the "
                "**policy** (the chat model) is then tuned to get high scores without drifting too far from the "
                "**reference model** (the model before tuning), measured by the **KL divergence**. DPO gets there "
                "without a separate reward model. Work through the tabs left to right, and open "
                "`notebooks/class7_code.ipynb` for the same material step by step in code.")
    for lesson in LESSONS:
        with gr.Accordion(lesson.title, open=lesson.key == "dpo"):
            comps[f"{lesson.key}_text"] = gr.Markdown(lesson_markdown(lesson), latex_delimiters=LATEX)
            comps[f"{lesson.key}_code"] = gr.Code(lesson_code(lesson), language="python",
                                                  label=f"alignment/losses.py: the code that computes it")
    gr.Markdown("## The methods side by side\n" + comparison_markdown() +
                "\n\nMeasured times for this machine are in the README (\"Choosing the classroom preset\").")
    return comps
