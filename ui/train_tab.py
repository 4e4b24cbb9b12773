"""Train tab: launch one short training at a time and watch loss, reward and KL live.

The run happens in a background thread owned by the manager (``manager.start_training``); a timer polls
``manager.training_status()`` every second. Each tick redraws the progress label (elapsed time, the phase the
run is in, the time left estimated from measured step times); the chart, the log tail (newest line first) and
the runs table are redrawn only when a step, a log line or the status is new. Stop says "stopping..." until the
run has really ended. A page opened while a run trains shows that run's method and settings. A failed run shows
its error; the app keeps working. Finished runs are listed and can be re-plotted.
"""

from __future__ import annotations

import gradio as gr

from alignment.config import METHODS

from .common import FREE, error_text, login, md_escape, progress_html

METHOD_LABELS = [("Reward model", "reward"), ("DPO", "dpo"), ("PPO", "ppo"), ("GRPO", "grpo")]
HELP = {
    "learning_rate": "Step size of the optimizer on the LoRA weights. Too high: unstable; too low: nothing moves in 30 steps.",
    "max_steps": "Optimizer steps (RM, DPO) or rollout batches (PPO, GRPO). Each costs a few seconds on a CPU.",
    "batch_size": "Preference pairs (RM, DPO) or prompts (PPO, GRPO) per step.",
    "beta": "DPO/GRPO: beta, strength of the pull back to the reference model. PPO: the KL coefficient.",
    "clip_range": "PPO/GRPO: how far the probability ratio may move in one update (epsilon).",
    "group_size": "GRPO: answers sampled per prompt; advantages are standardised within the group.",
    "lora_r": "LoRA rank: size of the trainable low-rank update (8 is plenty for a demo).",
}
SETTINGS = list(HELP)
LABELS = {"learning_rate": "learning rate", "max_steps": "steps", "batch_size": "batch size", "beta": "beta",
          "clip_range": "clip range", "group_size": "group size", "lora_r": "LoRA r"}


def duration(seconds: float) -> str:
    """``42 s``, ``2 min 05 s``, ``1 h 03 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_label(st: dict) -> str:
    """One line under the progress bar, fresh every second: steps done, the phase (and how long it has run),
    elapsed time and the time left; "stopping..." once Stop was pressed."""
    head = f"{st['method']}: step {st['step']}/{st['total_steps']}"
    if not st["running"]:
        return f"{head} · {st['status']} after {duration(st['elapsed_s'])}"
    parts = [head]
    if st.get("stop_requested"):
        parts.append("stopping…")
    if st.get("phase"):
        parts.append(f"{st['phase']} {duration(st.get('phase_elapsed_s') or 0)}")
    parts.append(f"{duration(st['elapsed_s'])} elapsed")
    if st["step"] < st["total_steps"] and not st.get("stop_requested"):
        eta = st.get("eta_s")
        parts.append("estimating time left…" if eta is None else f"about {duration(eta)} left")
    return " · ".join(parts)


def settings_summary(st: dict) -> str:
    """The running job's settings in one line (Markdown, numbers only)."""
    settings = st.get("settings") or {}
    shown = [f"{LABELS[n]} {settings[n]:g}" for n in SETTINGS if isinstance(settings.get(n), (int, float))]
    preset = settings.get("preset")
    return " · ".join(([f"preset {preset}"] if preset in ("quick", "classroom") else []) + shown)


def status_message(st: dict) -> str:
    """The line above the progress bar: training (with its settings), stopping, finished or failed."""
    method = st["method"].upper() if st["method"] != "reward" else "reward model"
    if st["status"] == "failed":
        return f"❌ **{method} failed**: {md_escape(st['error'])}. The app is still running; see the log tail below."
    if st["running"] and st.get("stop_requested"):
        where = ("at the next sampled token or phase boundary (a step it has not finished is dropped)"
                 if st["method"] == "ppo" else "at the end of the current step")
        return (f"⏹ **Stopping {method}…** it stops {where} and keeps what it learned "
                f"(started with {settings_summary(st)}).")
    if st["running"]:
        return f"▶️ Training **{method}** with {settings_summary(st)}."
    took = f" (the stop took {st['stop_latency_s']:.0f} s)" if st.get("stop_latency_s") is not None else ""
    icon = "⏹" if st["status"] == "stopped" else "✅"
    return f"{icon} **{method}** {st['status']} after {duration(st['elapsed_s'])}{took}."


def _runs_table(manager) -> list[list]:
    return [[r["method"], r["status"], f"{r.get('steps_done', '-')}/{r.get('total_steps', '-')}",
             r.get("train_time_s", "-"), r.get("error", "") or "", r["run_dir"]] for r in manager.list_runs()]


def create_train_tab(manager) -> dict:
    gr.Markdown("## Train\nOne run at a time, on the shared model. The reward model comes first: PPO and GRPO "
                "need it as their reward, and the Compare and Report tabs score with it.")
    with gr.Row():
        method = gr.Radio(METHOD_LABELS, value="reward", label="Method", elem_id="train-method")
        preset = gr.Radio([("Quick demo (4 steps)", "quick"), ("Classroom (30 steps)", "classroom")],
                          value=manager.preset, label="Preset", elem_id="train-preset")
    defaults = manager.training_settings("reward", manager.preset)
    with gr.Row():
        fields = {name: gr.Number(value=defaults[name], label=name.replace("_", " "), info=HELP[name],
                                  visible=defaults[name] is not None, elem_id=f"train-{name}")
                  for name in SETTINGS}
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    bar = gr.HTML(progress_html(0, 1, "idle"), elem_id="train-progress")
    chart = gr.Plot(label="Live metrics", elem_id="train-chart")
    log = gr.Textbox(label="Log tail (newest first)", lines=8, max_lines=12, interactive=False, autoscroll=False,
                     elem_id="train-log")
    gr.Markdown("### Runs")
    runs = gr.Dataframe(headers=["method", "status", "steps", "seconds", "error", "run dir"], value=_runs_table(manager),
                        wrap=True)
    with gr.Row():
        run_pick = gr.Dropdown(list(METHODS), value=None, label="Show a finished run", scale=1)
        run_chart = gr.Plot(label="Selected run", scale=4)
    timer = gr.Timer(1.0, active=True)

    def fill_defaults(m, p):
        values = manager.training_settings(m, p)
        return [gr.update(value=values[n], visible=values[n] is not None) for n in SETTINGS]

    def on_start(request: gr.Request, m, p, *vals):
        try:
            overrides = manager.settings_to_overrides(m, p, dict(zip(SETTINGS, vals)))
            job = manager.start_training(m, p, user=login(request), **overrides)  # p: shown to others
        except (ValueError, RuntimeError) as exc:
            return error_text(exc)
        return f"▶️ Training **{m}** for {job.total_steps} steps…"

    def on_stop(request: gr.Request):
        try:
            stopped = manager.stop_training(login(request))
        except PermissionError as exc:
            return error_text(exc)
        return status_message(manager.training_status()) if stopped else "Nothing is training."

    form = [method, preset, *fields.values()]

    def poll(seen):
        """Every second: the progress label always (while running), everything else only when something new
        happened; the form shows a running job's method and settings once per page and job."""
        seen = dict(seen or {})
        st = manager.training_status()
        keep = [gr.update()] * (5 + len(form))
        if st is None:
            return [*keep, seen]
        key = [st["started_at"], len(st["history"]), st["status"], st["stop_requested"],
               st["log_tail"][-1] if st["log_tail"] else ""]
        new = key != seen.get("key")
        if not new and not st["running"]:  # a finished run, already shown: leave the page alone
            return [*keep, seen]
        out = list(keep)
        out[1] = progress_html(st["step"], st["total_steps"], progress_label(st))
        if new:
            out[0] = status_message(st)
            out[2] = manager.training_chart(st["method"], st["history"])
            out[3] = "\n".join(reversed(st["log_tail"]))
            out[4] = _runs_table(manager)
            seen["key"] = key
        if st["running"] and seen.get("form") != st["started_at"]:  # show what is training, not the defaults
            settings = st.get("settings") or {}
            out[5] = gr.update(value=st["method"])
            if settings.get("preset"):
                out[6] = gr.update(value=settings["preset"])
            if any(n in settings for n in SETTINGS):
                out[7:] = [gr.update(value=settings.get(n), visible=settings.get(n) is not None) for n in SETTINGS]
            seen["form"] = st["started_at"]
        return [*out, seen]

    seen = gr.State(None)
    # .input, not .change: a form filled by the poll with a running job's settings must not be reset to defaults
    method.input(fill_defaults, [method, preset], list(fields.values()), api_visibility="private", **FREE)
    preset.input(fill_defaults, [method, preset], list(fields.values()), api_visibility="private", **FREE)
    start.click(on_start, [method, preset, *fields.values()], status, api_name="start_training", **FREE)
    stop.click(on_stop, None, status, api_name="stop_training", **FREE)
    timer.tick(poll, seen, [status, bar, chart, log, runs, *form, seen], api_visibility="private",
               show_progress="hidden", **FREE)  # every student's page polls every second
    run_pick.change(lambda m: manager.training_chart(m) if m else None, run_pick, run_chart, api_visibility="private",
                    **FREE)

    def training_status() -> dict:
        """The current (or last) training job: status, step, total_steps, history, log_tail, error."""
        return manager.training_status() or {"status": "idle"}

    gr.api(training_status, api_name="training_status", **FREE)
    return {"method": method, "preset": preset, **fields, "start": start, "stop": stop, "status": status,
            "bar": bar, "chart": chart, "log": log, "runs": runs, "timer": timer}
