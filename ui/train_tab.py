"""Train tab: launch one short training at a time and watch loss, reward and KL live.

The run happens in a background thread owned by the manager (``manager.start_training``); a timer polls
``manager.training_status()`` every second and redraws the chart, the progress bar and the log tail. A failed
run shows its error; the app keeps working. Finished runs are listed and can be re-plotted.
"""

from __future__ import annotations

import gradio as gr

from alignment.config import METHODS

from .common import error_text, progress_html

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


def _runs_table(manager) -> list[list]:
    return [[r["method"], r["status"], f"{r.get('steps_done', '-')}/{r.get('total_steps', '-')}",
             r.get("train_time_s", "-"), r.get("error", "") or "", r["run_dir"]] for r in manager.list_runs()]


def create_train_tab(manager) -> dict:
    gr.Markdown("## Train\nOne run at a time, on the shared model. The reward model comes first: PPO and GRPO "
                "need it as their reward, and the Compare and Report tabs score with it.")
    with gr.Row():
        method = gr.Radio(METHOD_LABELS, value="reward", label="Method")
        preset = gr.Radio([("Quick demo (4 steps)", "quick"), ("Classroom (30 steps)", "classroom")],
                          value="quick", label="Preset")
    defaults = manager.training_settings("reward", "quick")
    with gr.Row():
        fields = {name: gr.Number(value=defaults[name], label=name.replace("_", " "), info=HELP[name],
                                  visible=defaults[name] is not None, elem_id=f"train-{name}")
                  for name in SETTINGS}
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    bar = gr.HTML(progress_html(0, 1, "idle"))
    chart = gr.Plot(label="Live metrics", elem_id="train-chart")
    log = gr.Textbox(label="Log tail", lines=8, max_lines=12, interactive=False, elem_id="train-log")
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

    def on_start(m, p, *vals):
        try:
            overrides = manager.settings_to_overrides(m, p, dict(zip(SETTINGS, vals)))
            job = manager.start_training(m, None, **overrides)
        except (ValueError, RuntimeError) as exc:
            return error_text(exc)
        return f"▶️ Training **{m}** for {job.total_steps} steps…"

    def on_stop():
        return ("⏹ Stop requested: the run ends after the current step and keeps what it learned."
                if manager.stop_training() else "Nothing is training.")

    def poll(last_shown):
        st = manager.training_status()
        if st is None:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), last_shown
        key = (st["method"], len(st["history"]), st["status"])
        if key == last_shown:  # nothing new: leave the page alone
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), last_shown
        label = f"{st['method']}: step {st['step']}/{st['total_steps']} · {st['elapsed_s']:.0f}s · {st['status']}"
        if st["status"] == "failed":
            msg = f"❌ **{st['method']} failed**: {st['error']}. The app is still running; see the log tail below."
        elif st["running"]:
            msg = f"▶️ Training **{st['method']}**…"
        else:
            msg = f"✅ **{st['method']}** {st['status']} in {st['elapsed_s']:.0f}s."
        return (msg, progress_html(st["step"], st["total_steps"], label),
                manager.training_chart(st["method"], st["history"]), "\n".join(st["log_tail"]),
                _runs_table(manager), key)

    last = gr.State(None)
    method.change(fill_defaults, [method, preset], list(fields.values()), api_visibility="private")
    preset.change(fill_defaults, [method, preset], list(fields.values()), api_visibility="private")
    start.click(on_start, [method, preset, *fields.values()], status, api_name="start_training")
    stop.click(on_stop, None, status, api_name="stop_training")
    timer.tick(poll, last, [status, bar, chart, log, runs, last], api_visibility="private", show_progress="hidden")
    run_pick.change(lambda m: manager.training_chart(m) if m else None, run_pick, run_chart, api_visibility="private")

    def training_status() -> dict:
        """The current (or last) training job: status, step, total_steps, history, log_tail, error."""
        return manager.training_status() or {"status": "idle"}

    gr.api(training_status, api_name="training_status")
    return {"method": method, "preset": preset, **fields, "start": start, "stop": stop, "status": status,
            "bar": bar, "chart": chart, "log": log, "runs": runs, "timer": timer}
