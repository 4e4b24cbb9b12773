"""Data tab: choose the preference dataset, preview it, see its statistics and length histograms."""

from __future__ import annotations

import gradio as gr

from alignment.annotations import render_prompt
from alignment.data import hub_allowed

from .common import error_text, login, md_escape

SOURCES = ["built-in", "file path", "upload", "collected annotations", "hub dataset id"]


def _summary(manager, user=None) -> tuple[str, list[list], object, dict]:
    """(status, preview, histogram, statistics) of the dataset ``user`` trains on: their own choice, else the
    class's (``manager.dataset_for``)."""
    choice, ds = manager.dataset_for(user)
    report = ds["load_report"]
    skipped = "; ".join(f"{n} × {md_escape(r)} (first: row {report['first_skipped_row'][r]})"
                        for r, n in report["skipped"].items())
    whose = ("the class dataset" if choice == manager.class_dataset else "**your own** dataset (for your trainings "
             "only; the class dataset is unchanged)")
    text = (f"✅ **{report['kept']} pairs** from {md_escape(report['source'])} (format: {report['format']}) · "
            f"{len(ds['train'])} train / {len(ds['heldout'])} held-out · {whose}"
            + (f"\n\nSkipped: {skipped}" if skipped else ""))
    rows = [[r["category"], _cut(render_prompt(r["prompt"])), _cut(r["chosen"]), _cut(r["rejected"])]
            for r in manager.dataset_rows(user)[:25]]
    return text, rows, manager.dataset_figure(user), ds["statistics"]


def _cut(text: str, n: int = 600) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _folders(manager, code: bool = True) -> str:
    """``data/, outputs/``: the folders the path box may read, by their display names (no server paths)."""
    return ", ".join(f"`{f.display}`" if code else f.display for f in manager.allowed_data_folders())


def _where_text(manager) -> str:
    hub = ("a hub dataset id (`owner/name`)" if hub_allowed()
           else "hub dataset ids when the server is online (it is offline now)")
    return (f"**File path** reads only files inside the data folders: {_folders(manager)} (the project's `data/`, "
            "each `--data-dir` the teacher gave at launch, and the output folder with the collected annotations); "
            "give a name relative to one of them, e.g. `preferences.jsonl`. Also accepted: `builtin`, " + hub + ". "
            "Other files: upload them.")


def create_data_tab(manager) -> dict:
    gr.Markdown("## Preference data\nEvery method trains on the same pairs: a **prompt**, a **chosen** answer "
                "and a **rejected** answer. Accepted files: `.json`, `.jsonl`, `.jsonl.gz`, `.csv`, `.parquet` in "
                "TRL format (prompt/chosen/rejected, plain or conversational), HH-RLHF transcripts, orca columns, "
                "or this app's `collected_annotations.json`.\n\n" + _where_text(manager) +
                "\n\nWith logins, a student's choice applies to **their own trainings only**; the teacher's choice "
                "is the class dataset (the class models, the annotation items and the evaluation use it).")
    with gr.Row():
        source = gr.Radio(SOURCES, value="built-in", label="Source")
        max_pairs = gr.Number(value=0, precision=0, minimum=0, label="Use at most N pairs (0 = all)")
    path = gr.Textbox(label="File name (in a data folder) or hub id",
                      placeholder="preferences.jsonl (a file in " + _folders(manager, code=False) + ")"
                      + (" or a hub id, e.g. Anthropic/hh-rlhf" if hub_allowed() else ""))
    upload = gr.File(label="Upload a file", file_types=[".json", ".jsonl", ".gz", ".csv", ".parquet"])
    load = gr.Button("Load dataset", variant="primary")
    status = gr.Markdown()
    with gr.Row():
        hist = gr.Plot(label="Lengths")
        stats = gr.JSON(label="Statistics (tokens)")
    preview = gr.Dataframe(headers=["category", "prompt", "chosen", "rejected"], wrap=True, label="Preview (first 25)",
                           column_widths=["16%", "28%", "28%", "28%"], elem_id="data-preview")

    def on_load(src, p, up, n, request: gr.Request):
        user, limit = login(request), int(n) if n else None  # a teacher switches the class's, a student their own
        try:
            if src == "built-in":
                target = "builtin"
            elif src == "upload":
                if up is None:
                    raise ValueError("Choose a file to upload first")
                up = up if isinstance(up, str) else up.name  # a file in Gradio's upload cache
                manager.set_dataset_upload(up, max_pairs=limit, user=user)  # messages name only its base name
                return _summary(manager, user)
            elif src == "collected annotations":
                manager.use_annotations_as_dataset(limit, user)
                return _summary(manager, user)
            else:
                target = (p or "").strip()
                if not target:
                    raise ValueError(f"Enter a {'file path' if src == 'file path' else 'hub dataset id'}")
            manager.set_dataset(target, limit, user)
            return _summary(manager, user)
        except Exception as exc:  # shown to the user; the previous dataset stays loaded
            return error_text(exc) + "\n\nThe previous dataset is still in use.", gr.update(), gr.update(), gr.update()

    load.click(on_load, [source, path, upload, max_pairs], [status, preview, hist, stats], api_name="load_dataset")
    return {"source": source, "path": path, "upload": upload, "max_pairs": max_pairs, "load": load,
            "status": status, "preview": preview, "hist": hist, "stats": stats}


def refresh(manager, user=None) -> tuple:
    """Values for (status, preview, hist, stats) when the page opens: ``user``'s dataset."""
    try:
        return _summary(manager, user)
    except Exception as exc:
        return error_text(exc), [], None, {}
