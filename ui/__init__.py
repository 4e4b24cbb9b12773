"""The Gradio app: one module per tab, each ``create_x_tab(manager) -> dict[str, Component]``.

The tabs call only ``AlignmentComparisonManager`` (``class7_1.py``); nothing here trains, scores or stores by
itself. ``create_app(manager)`` assembles them; ``LAUNCH_KWARGS`` (keyboard shortcuts, CSS) go to ``launch()``.
"""

from __future__ import annotations

import gradio as gr

from . import data_tab, report_tab

from .annotate_tab import KEYBOARD_JS, create_annotate_tab
from .common import FREE, login, name_store, remember_name
from .compare_tab import create_compare_tab
from .data_tab import create_data_tab
from .learn_tab import create_learn_tab
from .report_tab import create_report_tab
from .train_tab import create_train_tab

CSS = """
.answer textarea {font-size: 0.95rem;}
.progress-outer {background:#e5e7eb;border-radius:6px;height:18px;width:100%;}
.progress-inner {background:#2563eb;height:18px;border-radius:6px;color:white;font-size:12px;text-align:center;}
.cmp-diff {margin: 0.3em 0; line-height: 1.5;}
.cmp-diff mark {background: #fde68a; padding: 0 2px;}
.cmp-diff del {color: #9ca3af;}
/* phones: wide tables scroll sideways inside Gradio's table viewport instead of breaking words letter by letter */
@media (max-width: 700px) {
  .virtual-table-viewport table {min-width: 680px;}
}
"""

# uploads (datasets) are bounded: a student cannot fill the server's disk through /gradio_api/upload
LAUNCH_KWARGS = {"head": KEYBOARD_JS, "css": CSS, "theme": gr.themes.Soft(), "max_file_size": "20mb"}


def create_app(manager) -> gr.Blocks:
    """All six tabs around one shared manager (model loaded once for every tab and user); starts the training
    queue's workers (``manager.start_workers``)."""
    info = manager.setup_models()
    manager.start_workers()
    with gr.Blocks(title="Alignment Lab: PPO, DPO and GRPO") as demo:
        gr.Markdown(f"# Alignment Lab: how language models learn human preferences\n"
                    f"Model: **{info['description']}** · outputs in `{manager.output_dir}`")
        store = name_store()  # outside the tabs, so it is mounted (and read) when the page loads
        with gr.Tabs() as tabs:
            with gr.Tab("1 · Learn", id="learn"):
                learn = create_learn_tab(manager)
            with gr.Tab("2 · Data", id="data"):
                data = create_data_tab(manager)
            with gr.Tab("3 · Annotate", id="annotate"):
                annotate = create_annotate_tab(manager)
            with gr.Tab("4 · Train", id="train"):
                train = create_train_tab(manager)
            with gr.Tab("5 · Compare", id="compare"):
                compare = create_compare_tab(manager)
            with gr.Tab("6 · Report", id="report"):
                report = create_report_tab(manager)
        # the Learn tab's "Open 5 · Compare": select the tab by its id (on a phone it sits in the "More tabs" menu)
        learn["to_compare"].click(lambda: gr.Tabs(selected="compare"), None, tabs, api_visibility="private",
                                  **FREE).then(None, js="() => window.scrollTo({top: 0})")
        demo.load(train["on_load"], None, [train["name"], train["class_model"], train["teacher"]],
                  api_visibility="private", **FREE)
        # one name for Annotate, Train and the arena: the login under --auth (read-only), else the typed name, kept
        # in this browser (the name store is made here, outside the tabs: see ui.common.name_store)
        named = remember_name(demo, [annotate["annotator"], train["name"], compare["voter"]], store)
        named.then(train["first_view"], train["name"], [train["runs"], train["run_pick"]], api_visibility="private",
                   **FREE)
        named.then(compare["run_options"], compare["voter"], list(compare["picks"].values()),
                   api_visibility="private", **FREE)

        def data_view(request: gr.Request):
            return data_tab.refresh(manager, login(request))

        demo.load(data_view, None,
                  [data["status"], data["preview"], data["hist"], data["stats"]],
                  api_visibility="private", show_progress="hidden", **FREE)
        def report_view(request: gr.Request):
            return report_tab.refresh(manager, login(request))

        demo.load(report["run_options"], None, list(report["picks"].values()), api_visibility="private", **FREE)
        demo.load(report_view, None,
                  [report["status"], report["headline"], report["files"], *report["plots"]], api_visibility="private",
                  show_progress="hidden", **FREE)
    return demo

