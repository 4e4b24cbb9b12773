"""Learn tab: what each method optimises, its formula, the lines of the project's code that compute it, and one
worked number computed by that code.

Text, formulas, code excerpts and worked numbers come from ``alignment.lessons`` (the notebook shows the same
source). ``LEARN_CSS`` lets wide tables and formulas scroll sideways on a phone instead of breaking words letter by
letter or clipping the formula.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from alignment.lessons import (LESSONS, OVEROPTIMIZATION, comparison_markdown, lesson_excerpt_code,
                               lesson_formula_markdown, overoptimization_markdown, worked_example)

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "class7_code.ipynb"

# Scoped to the tab's own elem_classes. A display formula wider than the screen scrolls sideways in its own box
# (KaTeX does not wrap; without this the whole Markdown block scrolls, text included, and looks clipped), a little
# smaller on a phone; the comparison table scrolls sideways, breaks lines only between words and gives each
# column at least 7em, so a phone shows two or three columns at a time instead of one letter per line.
LEARN_CSS = """
.learn-formula .katex-display {overflow-x: auto; overflow-y: hidden; max-width: 100%; padding: 2px 0 6px;
  scrollbar-width: thin;}
@media (max-width: 640px) {.learn-formula .katex-display {font-size: 0.85em;}}
.learn-compare table {display: block; overflow-x: auto; max-width: 100%; border: none !important;
  padding: 0 !important;}
.learn-compare th, .learn-compare td {word-break: normal; overflow-wrap: normal; hyphens: none; white-space: normal;
  min-width: 7em;}
"""

def create_learn_tab(manager) -> dict:
    comps = {"style": gr.HTML(f"<style>{LEARN_CSS}</style>", elem_id="learn-style", padding=False)}
    gr.Markdown("## How a model learns from preferences\n"
                "People compare answers; a **reward model** learns to score answers the way they would; the "
                "**policy** (the chat model) is then tuned to get high scores without drifting too far from the "
                "**reference model** (the model before tuning), measured by the **KL divergence**. DPO gets there "
                "without a separate reward model. Each method below shows its objective, the lines of this "
                "project's code that compute it, and one number computed by that code. Work through the tabs left "
                "to right.", elem_id="learn-intro")
    for lesson in LESSONS:
        with gr.Accordion(lesson.title, open=lesson.key == "dpo"):
            comps[f"{lesson.key}_text"] = gr.Markdown(lesson_formula_markdown(lesson), latex_delimiters=LATEX,
                                                      elem_classes=["learn-formula"],
                                                      elem_id=f"learn-{lesson.key}-formula")
            comps[f"{lesson.key}_code"] = gr.Code(lesson_excerpt_code(lesson), language="python", interactive=False,
                                                  label="The code that computes it (alignment/losses.py)",
                                                  elem_id=f"learn-{lesson.key}-code")
            comps[f"{lesson.key}_worked"] = gr.Markdown(
                f"**Worked number.** {worked_example(lesson)['text']}\n\n{lesson.notes}", latex_delimiters=LATEX,
                elem_classes=["learn-formula"], elem_id=f"learn-{lesson.key}-worked")
    with gr.Accordion(OVEROPTIMIZATION["title"], open=False, elem_id="learn-overoptimization"):
        comps["overoptimization"] = gr.Markdown(overoptimization_markdown(), latex_delimiters=LATEX,
                                                elem_classes=["learn-formula"], elem_id="learn-overoptimization-text")
    comps["comparison"] = gr.Markdown("## The methods side by side\n" + comparison_markdown(),
                                      elem_classes=["learn-compare"], elem_id="learn-compare")
    gr.Markdown("### Go further\nThe notebook walks through the same pipeline step by step in code: download it "
                "and open it in Jupyter from the project folder. To see what training changed, train a method in "
                "**4 · Train**, then ask every model the same prompt in **5 · Compare**.", elem_id="learn-further")
    with gr.Row():
        if NOTEBOOK.is_file():
            comps["notebook"] = gr.DownloadButton("Download the notebook (class7_code.ipynb)", value=str(NOTEBOOK),
                                                  elem_id="learn-notebook")
        comps["to_compare"] = gr.Button("Open 5 · Compare", elem_id="learn-to-compare")
    return comps
