"""Train tab: queue short trainings, watch your job's loss, reward and KL live, see your place in the queue.

Every Start queues a job (``manager.start_training``): the class's queue is fair across students and runs jobs in
worker processes, so nobody is refused because someone else trains. A timer polls ``manager.training_status``
every second for the caller's jobs: the newest one's progress label (queue position and estimated start, or the
phase, elapsed time and time left), chart and log tail; the "My jobs" table. Stop ends the caller's running job
(within about 2 s) or cancels their queued one. Teachers also see the whole queue, every student's jobs and
annotation counts, can cancel any job, and can train class models (what everybody compares against).
"""

from __future__ import annotations

import datetime

import gradio as gr

from alignment.config import SETTING_NAMES
from alignment.registry import REGISTRY

from .common import FREE, error_text, identity, login, md_escape, progress_html

METHOD_LABELS = [(spec.label, name) for name, spec in REGISTRY.items()]
HELP = {
    "learning_rate": "Step size of the optimizer on the LoRA weights. Too high: unstable; too low: nothing moves in 30 steps.",
    "max_steps": "Optimizer steps (RM, DPO) or rollout batches (PPO, GRPO). Each costs a few seconds on a CPU.",
    "batch_size": "Preference pairs (RM, DPO) or prompts (PPO, GRPO) per step.",
    "beta": "DPO/GRPO: beta, strength of the pull back to the reference model. PPO: the KL coefficient.",
    "clip_range": "PPO/GRPO: how far the probability ratio may move in one update (epsilon).",
    "group_size": "GRPO: answers sampled per prompt; advantages are standardised within the group.",
    "lora_r": "LoRA rank: size of the trainable low-rank update (8 is plenty for a demo).",
}
SETTINGS = list(SETTING_NAMES)  # their names and order come from the config fields (alignment.config)
LABELS = {"learning_rate": "learning rate", "max_steps": "steps", "batch_size": "batch size", "beta": "beta",
          "clip_range": "clip range", "group_size": "group size", "lora_r": "LoRA r"}
JOB_HEADERS = ["job", "method", "state", "queue", "starts in", "steps", "run"]
QUEUE_HEADERS = ["job", "student", "method", "state", "queue", "starts in", "steps", "submitted"]


def duration(seconds: float) -> str:
    """``42 s``, ``2 min 05 s``, ``1 h 03 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _label(method: str) -> str:
    return REGISTRY[method].label if method in REGISTRY else method


def starts_in(job: dict) -> str:
    if job["state"] != "queued":
        return ""
    s = job.get("start_in_s")
    return "estimating…" if s is None else ("next" if s < 1 else f"~{duration(s)}")


def progress_label(st: dict) -> str:
    """One line under the progress bar, fresh every second: queue position and estimated start for a waiting
    job; steps done, the phase (and how long it has run), elapsed time and time left for a running one."""
    head = f"{_label(st['method'])}: step {st.get('step', 0)}/{st['total_steps']}"
    if st["state"] == "queued":
        return f"{_label(st['method'])}: waiting, number {st['position']} in the queue · starts {starts_in(st)}"
    if st["state"] != "running":
        return f"{head} · {st['state']}" + (f" after {duration(st['elapsed_s'])}" if st.get("elapsed_s") else "")
    parts = [head]
    if st.get("stop_requested"):
        parts.append("stopping…")
    if st.get("phase"):
        parts.append(f"{st['phase']} {duration(st.get('phase_elapsed_s') or 0)}")
    if st.get("elapsed_s") is not None:
        parts.append(f"{duration(st['elapsed_s'])} elapsed")
    if st.get("step", 0) < st["total_steps"] and not st.get("stop_requested"):
        eta = st.get("eta_s")
        parts.append("estimating time left…" if eta is None else f"about {duration(eta)} left")
    return " · ".join(parts)


def settings_summary(st: dict) -> str:
    """The job's settings in one line (Markdown, numbers only)."""
    settings = st.get("settings") or {}
    shown = [f"{LABELS[n]} {settings[n]:g}" for n in SETTINGS if isinstance(settings.get(n), (int, float))]
    preset = settings.get("preset")
    return " · ".join(([f"preset {preset}"] if preset in ("quick", "classroom") else []) + shown)


def status_message(st: dict) -> str:
    """The line above the progress bar: waiting, training (with its settings), stopping, finished or failed."""
    method = _label(st["method"])
    whose = " (a class model)" if st.get("class_model") else ""
    if st["state"] == "queued":
        when = ("its start time is being estimated" if st.get("start_in_s") is None
                else f"it starts {starts_in(st)}")
        return (f"⏳ **{method}**{whose} is number **{st['position']}** in the queue; {when}. You can leave this "
                "page: it keeps its place.")
    if st["state"] == "failed":
        return (f"❌ **{method} failed**: {md_escape(st.get('error') or 'see the log tail')}. The app is still "
                "running; see the log tail below.")
    if st["state"] == "running" and st.get("stop_requested"):
        return f"⏹ **Stopping {method}…** it keeps what it learned (started with {settings_summary(st)})."
    if st["state"] == "running":
        return f"▶️ Training **{method}**{whose} with {settings_summary(st)}."
    icon = {"stopped": "⏹", "cancelled": "⏹", "interrupted": "⚠️"}.get(st["state"], "✅")
    extra = " The server restarted while it ran: press Requeue to run it again." if st["state"] == "interrupted" else ""
    took = f" after {duration(st['elapsed_s'])}" if st.get("elapsed_s") else ""
    return f"{icon} **{method}** {st['state']}{took}.{extra}"


def _steps(j: dict) -> str:
    return f"{j.get('step', 0)}/{j.get('total_steps') or '-'}" if j["state"] != "queued" else f"-/{j.get('total_steps')}"


def jobs_table(jobs: list[dict]) -> list[list]:
    return [[j["id"], _label(j["method"]) + (" (class)" if j.get("class_model") else ""), j["state"],
             j.get("position") or "", starts_in(j), _steps(j), j.get("run") or ""] for j in jobs]


def queue_table(view: dict) -> list[list]:
    rows = view["active"] + view["recent"]
    return [[j["id"], j["owner"], _label(j["method"]), j["state"], j.get("position") or "", starts_in(j), _steps(j),
             datetime.datetime.fromtimestamp(j["submitted_at"]).strftime("%H:%M:%S")] for j in rows]


def students_table(view: dict) -> list[list]:
    return [[name, s.get("annotations", 0), s.get("jobs", 0), s.get("running", 0), s.get("queued", 0),
             s.get("completed", 0), s.get("failed", 0)] for name, s in sorted(view["students"].items())]


def _runs_table(manager, user) -> list[list]:
    return [[r["method"], r["status"], f"{r.get('steps_done', '-')}/{r.get('total_steps', '-')}",
             r.get("train_time_s", "-"), r.get("error", "") or "", r["key"]] for r in manager.list_runs(user)]


FILM_HEADERS = ["step", "category", "prompt", "answer", "proxy RM", "gold RM", "rules", "KL (nats)", "tokens"]


def film_rows(frames: list[dict], limit: int = 40) -> list[list]:
    """The film strip as table rows, newest frame first (at most ``limit`` rows); a missing score shows "-"."""
    def num(v, digits=2):
        return "-" if v is None else round(v, digits)

    rows = [[f["step"], a.get("category") or "", a["prompt"] if isinstance(a["prompt"], str) else "(conversation)",
             a["response"], num(a.get("proxy")), num(a.get("gold")), num(a.get("rules")), num(a.get("kl")),
             a.get("length_tokens")] for f in reversed(frames) for a in f.get("answers", [])]
    return rows[:limit]


def create_train_tab(manager) -> dict:
    gr.Markdown("## Train\nEvery training joins the class's queue (fair: one job per student in turn) and runs in "
                "its own process; your runs go to your own workspace, and nobody else's run replaces yours. The "
                "reward model comes first: PPO and GRPO need it as their reward (yours, or the class's).")
    with gr.Row():
        name = gr.Textbox(label="Your name", placeholder="e.g. ana", max_length=64, scale=1, elem_id="train-name",
                          info="Names are not verified without logins.")
        method = gr.Radio(METHOD_LABELS, value="reward", label="Method", elem_id="train-method", scale=2)
        preset = gr.Radio([("Quick demo (4 steps)", "quick"), ("Classroom (30 steps)", "classroom")],
                          value=manager.preset, label="Preset", elem_id="train-preset", scale=2)
    defaults = manager.training_settings("reward", manager.preset)
    with gr.Row():
        fields = {n: gr.Number(value=defaults[n], label=n.replace("_", " "), info=HELP[n],
                               visible=defaults[n] is not None, elem_id=f"train-{n}") for n in SETTINGS}
    flaw = gr.Dropdown([("none: clean pairs", "none"), ("length: the longer answer always wins", "length")],
                       value="none", label="Planted reward flaw (the reward-hacking exercise)", elem_id="train-flaw",
                       info="The proxy reward model learns from pairs with this bias; the gold one stays clean. Then "
                            "train PPO or GRPO on it and watch the film strip: the proxy score climbs while the gold "
                            "score and the rules fall (Learn tab: reward over-optimisation).")
    with gr.Row():
        class_model = gr.Checkbox(False, label="Train a class model (teachers: everybody compares against it)",
                                  visible=False, elem_id="train-class-model")
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status")
    bar = gr.HTML(progress_html(0, 1, "no training yet"), elem_id="train-progress")
    chart = gr.Plot(label="Live metrics", elem_id="train-chart")
    log = gr.Textbox(label="Log tail (newest first)", lines=8, max_lines=12, interactive=False, autoscroll=False,
                     elem_id="train-log")
    gr.Markdown("### My jobs")
    jobs = gr.Dataframe(headers=JOB_HEADERS, value=[], wrap=True, elem_id="train-jobs")
    with gr.Row():
        job_id = gr.Number(label="Job number", precision=0, minimum=0, scale=1)
        cancel = gr.Button("Cancel / stop job", scale=1)
        requeue = gr.Button("Requeue job", scale=1)
    with gr.Accordion("Teacher: the whole queue", open=True, visible=False, elem_id="train-teacher") as teacher:
        queue_df = gr.Dataframe(headers=QUEUE_HEADERS, value=[], wrap=True, elem_id="train-queue")
        students_df = gr.Dataframe(headers=["student", "annotations", "jobs", "running", "queued", "completed",
                                            "failed"], value=[], wrap=True)
    gr.Markdown("### Runs (the class's and mine)")
    runs = gr.Dataframe(headers=["method", "status", "steps", "seconds", "error", "run"], value=[], wrap=True)
    with gr.Accordion("Film strip: the same prompts answered every few steps (over-optimisation)", open=False,
                      elem_id="train-film"):
        gr.Markdown("Every 10 steps the policy answers the same 8 evaluation prompts. The proxy reward model (the "
                    "one PPO and GRPO optimise), the gold reward model (trained on other pairs, never optimised) "
                    "and the rules score each answer; KL is in nats from the base model. A proxy score that climbs "
                    "while gold and rules fall is reward over-optimisation (Gao et al. 2023).")
        film_chart = gr.Plot(label="Scores vs KL since the first frame", elem_id="train-film-chart")
        film = gr.Dataframe(headers=FILM_HEADERS, value=[], wrap=True, elem_id="train-film-table",
                            column_widths=["64px", "112px", "200px", "360px", "88px", "88px", "64px", "88px", "72px"])
    with gr.Row():
        run_pick = gr.Dropdown([], value=None, label="Show a finished run", scale=1, allow_custom_value=False)
        run_chart = gr.Plot(label="Selected run", scale=4)
    timer = gr.Timer(1.0, active=True)

    def fill_defaults(m, p):
        values = manager.training_settings(m, p)
        return [gr.update(value=values[n], visible=values[n] is not None) for n in SETTINGS] + [
            gr.update(visible=m == "reward")]

    def on_load(request: gr.Request):
        user = login(request)
        named = gr.update(value=user, interactive=False, info="Your login.") if user else gr.update()
        teach = manager.is_teacher(user)
        return named, gr.update(visible=teach), gr.update(visible=teach)

    def on_start(request: gr.Request, m, p, *vals):
        *vals, who, as_class, planted = vals
        try:
            overrides = manager.settings_to_overrides(m, p, dict(zip(SETTINGS, vals)))
            if m == "reward" and planted not in (None, "", "none"):
                overrides["reward_flaw"] = planted  # validated by the config: an unknown flaw is refused
            job = manager.start_training(m, p, user=who_of(request, who),
                                         class_model=bool(as_class), **overrides)
        except (ValueError, RuntimeError, PermissionError) as exc:
            return error_text(exc)
        if job["state"] == "queued" and job["position"] == 1 and not manager.queue.running():
            return f"▶️ **{_label(m)}** (job {job['id']}) starts now…"
        return status_message(job)

    def who_of(request, typed):
        """The caller: the login under ``--auth``, else the typed name (None: the manager's guest)."""
        return identity(request, typed) or None

    def on_stop(request: gr.Request, who):
        try:
            stopped = manager.stop_training(who_of(request, who))
        except PermissionError as exc:
            return error_text(exc)
        return "⏹ Stopping… (within about 2 s)" if stopped else "Nothing of yours is training or waiting."

    def on_cancel(request: gr.Request, who, jid):
        try:
            if jid is None:
                raise ValueError("Type the job number (first column of the table)")
            done = manager.cancel_job(who_of(request, who), int(jid))
        except (PermissionError, ValueError, LookupError) as exc:
            return error_text(exc)
        return f"⏹ Job {int(jid)}: stopping or cancelled." if done else f"Job {int(jid)} has already ended."

    def on_requeue(request: gr.Request, who, jid):
        try:
            if jid is None:
                raise ValueError("Type the job number (first column of the table)")
            job = manager.requeue_job(int(jid), who_of(request, who))
        except (PermissionError, ValueError, LookupError) as exc:
            return error_text(exc)
        return status_message(job)

    form = [method, preset, *fields.values()]

    def poll(request: gr.Request, who, seen):
        """Every second: the caller's newest job (label always while it waits or runs; chart, log and tables only
        when something new happened); the teacher's tables every 3 s."""
        seen = dict(seen or {})
        user = who_of(request, who)
        st = manager.training_status(user)
        cur = st["current"]
        out = [gr.update()] * 11
        tick = seen.get("tick", 0) + 1
        seen["tick"] = tick
        if cur is not None:
            key = [cur["id"], cur["state"], cur.get("step"), cur.get("stop_requested"), cur.get("position"),
                   (cur.get("log_tail") or [""])[-1]]
            live = cur["state"] in ("queued", "running")
            if live or key != seen.get("key"):
                out[1] = progress_html(cur.get("step", 0) if cur["state"] != "queued" else 0, cur["total_steps"] or 1,
                                       progress_label(cur))
            if key != seen.get("key"):
                out[0] = status_message(cur)
                out[2] = manager.training_chart(cur["method"], cur.get("history") or [])
                out[3] = "\n".join(reversed(cur.get("log_tail") or []))
                out[5] = _runs_table(manager, user)
                keys = [r[5] for r in out[5] if r[1] in ("completed", "stopped")]
                out[6] = gr.update(choices=keys)
                frames = manager.film_strip(job=cur)
                if frames or cur["state"] == "queued":
                    out[9], out[10] = film_rows(frames), manager.film_strip_chart(cur["method"], frames)
                seen["key"] = key
        table = jobs_table(st["jobs"])
        if table != seen.get("jobs"):
            out[4], seen["jobs"] = table, table
        if manager.is_teacher(login(request)) and (tick % 3 == 1):
            view = manager.queue_status(login(request))
            out[7], out[8] = queue_table(view), students_table(view)
        return [*out, seen]


    def first_view(request: gr.Request, who):
        user = who_of(request, who)
        rows = _runs_table(manager, user)
        return rows, gr.update(choices=[r[5] for r in rows if r[1] in ("completed", "stopped")])

    seen = gr.State(None)
    # .input, not .change: a form filled programmatically must not be reset to defaults
    method.input(fill_defaults, [method, preset], [*fields.values(), flaw], api_visibility="private", **FREE)
    preset.input(fill_defaults, [method, preset], [*fields.values(), flaw], api_visibility="private", **FREE)
    start.click(on_start, [*form, name, class_model, flaw], status, api_name="start_training", **FREE)
    stop.click(on_stop, name, status, api_name="stop_training", **FREE)
    cancel.click(on_cancel, [name, job_id], status, api_name="cancel_job", **FREE)
    requeue.click(on_requeue, [name, job_id], status, api_name="requeue_job", **FREE)
    timer.tick(poll, [name, seen], [status, bar, chart, log, jobs, runs, run_pick, queue_df, students_df, film,
                                    film_chart, seen],
               api_visibility="private", show_progress="hidden", **FREE)  # every student's page polls every second
    def show_run(request: gr.Request, who, key):
        if not key:
            return None, gr.update(), gr.update()
        user, method = who_of(request, who), key.split("/")[-2]
        try:
            frames = manager.film_strip(key, user)
            return (manager.training_chart(method, key=key, user=user), film_rows(frames),
                    manager.film_strip_chart(method, frames))
        except ValueError:  # a run that is not the caller's: nothing to show
            return None, gr.update(), gr.update()

    run_pick.change(show_run, [name, run_pick], [run_chart, film, film_chart], api_visibility="private", **FREE)

    def training_status(name: str = "", request: gr.Request = None) -> dict:
        """Your jobs (newest first) with state, queue position and estimated start; the newest with its metrics
        and log tail. ``name``: who you are without logins (ignored under ``--auth``)."""
        return manager.training_status(login(request) or (name or "").strip() or None)

    def queue_status(request: gr.Request = None) -> dict:
        """Teachers: the whole queue, every student's jobs and annotation counts."""
        try:
            return manager.queue_status(login(request))
        except PermissionError as exc:
            return {"error": str(exc)}

    gr.api(training_status, api_name="training_status", **FREE)
    gr.api(queue_status, api_name="queue_status", **FREE)
    return {"name": name, "method": method, "preset": preset, **fields, "flaw": flaw, "film": film,
            "film_chart": film_chart, "class_model": class_model, "start": start,
            "stop": stop, "status": status, "bar": bar, "chart": chart, "log": log, "jobs": jobs, "job_id": job_id,
            "cancel": cancel, "requeue": requeue, "teacher": teacher, "queue": queue_df, "students": students_df,
            "runs": runs, "run_pick": run_pick, "timer": timer, "on_load": on_load, "first_view": first_view}
