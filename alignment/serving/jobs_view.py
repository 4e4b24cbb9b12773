"""What the pages show of the training queue: one job (its row plus its run's progress), the estimated start of
every waiting job, and the teacher's view of the whole class.

The numbers come from the queue (``JobQueue``) and the run directories the workers write (``progress.json``,
``metrics.jsonl``, ``worker.log``); nothing here starts or stops anything.
"""

from __future__ import annotations

import heapq
import statistics
import time
from pathlib import Path

from ..jobs import snapshot
from ..trainers.common import read_metrics
from .worker import log_tail, read_progress

ROW_FIELDS = ("id", "owner", "method", "state", "position", "label", "submitted_at", "started_at", "finished_at",
              "error", "total_steps", "stop_requested")


def job_view(job: dict, output_dir: Path, detail: bool = False) -> dict:
    """A job as a page shows it: its queue row, its settings, ``run`` (the run directory relative to the output
    folder: no server path), ``step``/``phase``/``eta_s``/... from ``progress.json`` (``alignment.jobs.snapshot``),
    ``elapsed_s``; with ``detail`` also ``history`` (metrics lines) and ``log_tail`` (the worker's log)."""
    view = {k: job.get(k) for k in ROW_FIELDS}
    spec = job.get("spec") or {}
    view["settings"], view["class_model"] = spec.get("settings", {}), bool(spec.get("class_model"))
    view["run"] = None
    if job.get("run_dir"):
        rd = Path(job["run_dir"])
        view["run"] = rd.relative_to(output_dir).as_posix() if rd.is_relative_to(output_dir) else rd.name
        view.update(snapshot(read_progress(rd), job["state"] == "running"))
        if detail:
            view["history"], view["log_tail"] = read_metrics(rd / "metrics.jsonl"), log_tail(rd)
    else:
        view.update(step=0, phase=None, eta_s=None)
    view["elapsed_s"] = round((job.get("finished_at") or time.time()) - job["started_at"], 1) \
        if job.get("started_at") else None
    return view


def expected_duration(job: dict, finished: list[dict]) -> float | None:
    """Seconds ``job`` should take: the median seconds per step of the last 5 completed jobs of its method in
    ``finished`` (newest first; loading included) times its steps; None before any such job finished."""
    done = [j for j in finished if j["method"] == job["method"] and j["state"] == "completed"
            and j.get("started_at") and j.get("finished_at")][:5]
    if not done:
        return None
    per_step = statistics.median((j["finished_at"] - j["started_at"]) / max(1, j["total_steps"] or 1) for j in done)
    return per_step * (job.get("total_steps") or 1)


def start_estimates(queue, output_dir: Path, workers: int) -> dict[int, float | None]:
    """Seconds until each queued job starts: the workers' free times (the running jobs' time left, measured by
    their step times) filled in queue order with each job's ``expected_duration``. None from the first job whose
    wait cannot be estimated yet (no finished job of a method ahead of it)."""
    finished = queue.jobs(None, limit=300)
    free = []
    for job in queue.running():
        left = job_view(job, output_dir).get("eta_s")
        free.append(left if left is not None else expected_duration(job, finished))
    free += [0.0] * max(0, workers - len(free))
    order = queue.order()
    if any(f is None for f in free):
        return {j["id"]: None for j in order}
    heapq.heapify(free)
    out: dict[int, float | None] = {}
    for job in order:
        start = heapq.heappop(free)
        out[job["id"]] = round(start, 1)
        need = expected_duration(job, finished)
        if need is None:
            return {**out, **{j["id"]: None for j in order if j["id"] not in out}}
        heapq.heappush(free, start + need)
    return out


def teacher_view(queue, output_dir: Path, workers: int, annotation_counts: dict[str, int]) -> dict:
    """The whole queue (running, then queued in start order with ``start_in_s``, then the last 50 finished jobs)
    and per student: jobs by state and annotations."""
    starts = start_estimates(queue, output_dir, workers)
    active = [job_view(j, output_dir) for j in queue.running()] + \
             [{**job_view(j, output_dir), "start_in_s": starts.get(j["id"])} for j in queue.order()]
    recent = [job_view(j, output_dir) for j in queue.jobs(None, limit=80) if j["state"] not in ("queued", "running")]
    students: dict[str, dict] = {}
    for j in queue.jobs(None, limit=1000):
        s = students.setdefault(j["owner"], {"jobs": 0, "running": 0, "queued": 0, "annotations": 0})
        s["jobs"] += 1
        s[j["state"]] = s.get(j["state"], 0) + 1
    for name, n in annotation_counts.items():
        students.setdefault(name, {"jobs": 0, "running": 0, "queued": 0})["annotations"] = n
    return {"active": active, "recent": recent[:50], "students": students, "counts": queue.counts(),
            "workers": workers}
