"""Training jobs in worker processes (alignment.serving: dispatcher, backends, worker) and through the manager.

The jobs run in real child processes (``LocalProcessBackend``) or Ray tasks, mostly with the stand-in targets of
``tests/worker_targets.py`` (no torch training); one local and one Ray test train the tiny model for one step.
Every dispatcher and manager is closed at the end of its test, which kills whatever still runs.
"""

import functools
import json
import os
import signal
import time
from pathlib import Path

import pytest

from alignment.serving import backends
from alignment.serving.backends import LocalProcessBackend
from alignment.serving.dispatcher import Dispatcher
from alignment.serving.queue import JobQueue, QueueFull

TARGETS = "tests.worker_targets"


def wait_for(predicate, timeout: float, poll: float = 0.1, what="condition"):
    """Poll ``predicate()`` until it returns something truthy (returned) or ``timeout`` seconds pass (fail);
    ``what``: text, or a function giving it, for the failure message."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(poll)


def wait_state(queue, job_id: int, states, timeout: float = 60.0, poll: float = 0.1) -> dict:
    states = (states,) if isinstance(states, str) else tuple(states)

    def check():
        job = queue.get(job_id)
        return job if job["state"] in states else None
    return wait_for(check, timeout, poll,
                    lambda: f"job {job_id} to be {'/'.join(states)} (is {queue.get(job_id)['state']})")


def run_info(run_dir) -> dict:
    return json.loads((Path(run_dir) / "run_info.json").read_text(encoding="utf-8"))


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def worker_pid(job: dict) -> int:
    """The pid the stand-in target wrote to its run directory."""
    return int((Path(job["run_dir"]) / "pid").read_text())


def wait_running_with_progress(queue, job_id: int, timeout: float = 60.0) -> dict:
    """The job runs and its worker has logged its first step (so the process is past its imports)."""
    wait_state(queue, job_id, "running", timeout)

    def first_step():
        run_dir = queue.get(job_id)["run_dir"]
        metrics = Path(run_dir) / "metrics.jsonl" if run_dir else None
        return metrics is not None and metrics.is_file() and metrics.read_text().strip()
    wait_for(first_step, timeout, what=f"job {job_id}'s first step")
    return queue.get(job_id)


# ---------------------------------------------------------------------------------------- dispatcher + local processes
@pytest.fixture()
def serve(tmp_path):
    """``serve(workers=1) -> (queue, dispatcher)``: local worker processes running ``worker_targets.route``; a job's
    spec ``{"target": name}`` picks the stand-in; run directories under ``tmp_path/runs/<job id>``."""
    made = []

    def prepare(job):
        return {"job_id": job["id"], "owner": job["owner"], "method": job["method"],
                "run_dir": str(tmp_path / "runs" / str(job["id"])), "target": job["spec"]["target"]}

    def make(workers: int = 1) -> tuple:
        queue = JobQueue(tmp_path / "jobs.sqlite")
        dispatcher = Dispatcher(queue, LocalProcessBackend(entry=f"{TARGETS}:route", gpus=0), prepare,
                                workers=workers).start()
        made.append(dispatcher)
        return queue, dispatcher

    yield make
    for dispatcher in made:
        dispatcher.close()


def submit(queue, owner: str, target: str, method: str = "dpo") -> int:
    return queue.submit(owner, method, {"target": target}, total_steps=2, label=target)["id"]


def test_crash_fails_the_job_and_the_next_one_runs(serve):
    queue, dispatcher = serve()
    crashed, nxt = submit(queue, "ana", "crash"), submit(queue, "ben", "ok")
    job = wait_state(queue, crashed, ("failed", "completed", "stopped"), 60)
    assert job["state"] == "failed"
    assert "exit code 3" in job["error"], job["error"]
    run_dir = Path(job["run_dir"])
    error_log = (run_dir / "error.log").read_text(encoding="utf-8")
    assert "exit code 3" in error_log and "CRASH-MARKER" in error_log  # the log tail is in it
    info = run_info(run_dir)
    assert info["status"] == "failed" and info["steps_done"] == 1 and "exit code 3" in info["error"]
    # the server (this process) and its dispatcher go on: the next job runs to completion
    assert dispatcher.thread.is_alive()
    done = wait_state(queue, nxt, ("failed", "completed", "stopped"), 60)
    assert done["state"] == "completed" and done["error"] is None
    assert run_info(done["run_dir"])["status"] == "completed"


def test_sigkill_fails_the_job_and_the_next_one_runs(serve):
    queue, dispatcher = serve()
    killed, nxt = submit(queue, "ana", "sleeper"), submit(queue, "ana", "ok")
    pid = worker_pid(wait_running_with_progress(queue, killed))
    assert pid != os.getpid() and alive(pid)
    os.kill(pid, signal.SIGKILL)  # e.g. the kernel's out-of-memory killer
    job = wait_state(queue, killed, ("failed", "completed", "stopped"), 10)
    assert job["state"] == "failed"
    assert "killed by SIGKILL" in job["error"], job["error"]
    assert "killed by SIGKILL" in (Path(job["run_dir"]) / "error.log").read_text(encoding="utf-8")
    assert run_info(job["run_dir"])["status"] == "failed"
    assert dispatcher.thread.is_alive()
    assert wait_state(queue, nxt, ("failed", "completed", "stopped"), 60)["state"] == "completed"


def _stop_and_time(queue, job_id: int) -> tuple[float, dict]:
    """Request a stop; seconds until the job's state leaves ``running`` (polled every 20 ms), and the job."""
    t0 = time.time()
    queue.request_stop(job_id)
    job = wait_state(queue, job_id, ("stopped", "completed", "failed", "interrupted"), 10, poll=0.02)
    took = time.time() - t0
    print(f"job {job_id} ({job['label']}) ended {job['state']} {took:.2f}s after the stop request")
    return took, job


def test_stop_ends_a_running_job_within_2s(serve):
    queue, dispatcher = serve(workers=2)  # both start at once (each process spends seconds importing)
    graceful, hanging = submit(queue, "ana", "slow_graceful"), submit(queue, "ben", "hang")
    wait_running_with_progress(queue, graceful)
    hang_pid = worker_pid(wait_running_with_progress(queue, hanging))

    took, job = _stop_and_time(queue, graceful)  # ends at its next stop check
    assert job["state"] == "stopped" and job["error"] is None
    assert took < 2.0 and job["finished_at"] - job["stop_requested_at"] < 2.0, took
    info = run_info(job["run_dir"])
    assert info["status"] == "stopped" and info.get("ended") == "graceful"  # its own finish, not the kill
    assert queue.get(hanging)["state"] == "running"  # the other job was not touched

    took, job = _stop_and_time(queue, hanging)  # never checks STOP: terminated after the grace period
    assert job["state"] == "stopped" and job["error"] is None
    assert took < 2.0 and job["finished_at"] - job["stop_requested_at"] < 2.0, took
    assert took >= dispatcher.stop_grace_s - 0.05  # it really was given its grace period
    info = run_info(job["run_dir"])  # the run directory is valid: closed as stopped, with the steps it did
    assert info["status"] == "stopped" and info["steps_done"] == 1 and "ended" not in info
    assert not alive(hang_pid) and not dispatcher.running_ids()


# ---------------------------------------------------------------------------------------- through the manager
@pytest.fixture()
def managers(monkeypatch):
    """``managers(output_dir, entry=None, **kwargs) -> AlignmentComparisonManager`` on the tiny model (preset
    quick); with ``entry``, ``start_workers()`` runs that stand-in instead of ``run_job``. All closed at the end."""
    from class7_1 import AlignmentComparisonManager

    made = []

    def make(output_dir, entry: str | None = None, **kwargs):
        if entry is not None:  # start_workers imports the class when it runs: it gets this one
            monkeypatch.setattr(backends, "LocalProcessBackend",
                                functools.partial(LocalProcessBackend, entry=f"{TARGETS}:{entry}", gpus=0))
        manager = AlignmentComparisonManager("tiny", output_dir=output_dir, preset="quick", **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


def test_restart_interrupts_running_jobs_and_runs_queued_ones(tmp_path, managers):
    dead = managers(tmp_path)  # a server that dies with one job running and two queued (no dispatcher)
    first = dead.start_training("reward", user="ana", max_steps=1)["id"]
    second = dead.start_training("dpo", user="ana", max_steps=1)["id"]
    assert dead.queue.claim_next("local")["id"] == first
    third = dead.start_training("reward", user="ana", max_steps=1)["id"]
    run = dead.workspaces.new_run("ana", "reward")
    run.path.mkdir(parents=True)
    (run.path / "run_info.json").write_text(json.dumps({"method": "reward", "status": "running", "total_steps": 1}))
    (run.path / "metrics.jsonl").write_text(json.dumps({"step": 1, "elapsed_s": 0.5, "loss": 0.7}) + "\n")
    (run.path / "worker.log").write_text("loading\n")
    dead.queue.set_run_dir(first, str(run.path))

    manager = managers(tmp_path, entry="ok")  # the new server
    dispatcher = manager.start_workers()
    assert isinstance(dispatcher.backend, LocalProcessBackend) and dispatcher.backend.entry == f"{TARGETS}:ok"
    job = manager.queue.get(first)  # at start-up, before anything new runs
    assert job["state"] == "interrupted" and job["error"]
    assert run.path.is_dir() and (run.path / "worker.log").is_file()
    info = run_info(run.path)
    assert info["status"] == "interrupted" and info["steps_done"] == 1
    for job_id in (second, third):
        done = wait_state(manager.queue, job_id, ("completed", "failed", "stopped", "interrupted"), 60)
        assert done["state"] == "completed", done
        assert Path(done["run_dir"]).parent.parent == tmp_path / "students" / "ana" / "runs"
        assert run_info(done["run_dir"])["status"] == "completed"
    assert manager.training_status("ana")["jobs"][-1]["state"] == "interrupted"

    again = manager.requeue_job(first, user="ana")
    assert again["id"] not in (first, second, third) and again["state"] == "queued" and again["method"] == "reward"
    done = wait_state(manager.queue, again["id"], ("completed", "failed", "stopped", "interrupted"), 60)
    assert done["state"] == "completed"
    assert manager.queue.get(first)["state"] == "interrupted"  # the old job stays as it ended
    assert Path(done["run_dir"]) != run.path and run_info(run.path)["status"] == "interrupted"


def test_permissions_through_the_manager(tmp_path, managers):
    manager = managers(tmp_path, entry="slow_graceful", teachers=["teach"], workers=2)
    for record in ({"annotator": "ana", "prompt": "Say hi.", "responses": ["Hi!", "Go away."], "choice": "A"},
                   {"annotator": "ana", "prompt": "Say bye.", "responses": ["Bye!", "No."], "choice": "A"},
                   {"annotator": "ben", "prompt": "Say hi.", "responses": ["Hi!", "Go away."], "choice": "B"}):
        manager.submit_annotation(record, user=record["annotator"])
    a1 = manager.start_training("reward", user="ana", max_steps=1)["id"]
    a2 = manager.start_training("dpo", user="ana", max_steps=1)["id"]
    with pytest.raises(QueueFull):
        manager.start_training("dpo", user="ana", max_steps=1)
    b1 = manager.start_training("reward", user="ben", max_steps=1)["id"]

    # queued: ben can neither cancel nor stop ana's job; the teacher can
    with pytest.raises(PermissionError):
        manager.cancel_job("ben", a2)
    with pytest.raises(PermissionError):
        manager.stop_training("ben", a2)
    assert manager.queue.get(a2)["state"] == "queued"
    assert manager.cancel_job("teach", a2) is True
    assert manager.queue.get(a2)["state"] == "cancelled"

    # running (a1 and b1 at once): the same for stop
    manager.start_workers()
    wait_running_with_progress(manager.queue, a1)
    wait_running_with_progress(manager.queue, b1)
    with pytest.raises(PermissionError):
        manager.stop_training("ben", a1)
    with pytest.raises(PermissionError):
        manager.cancel_job("ana", b1)
    time.sleep(0.5)  # a refused stop must not have reached the dispatcher either
    assert manager.queue.get(a1)["state"] == "running" and not manager.queue.get(a1)["stop_requested"]
    t0 = time.time()
    assert manager.stop_training("teach", a1) is True
    assert wait_state(manager.queue, a1, ("stopped", "completed", "failed"), 10, poll=0.02)["state"] == "stopped"
    assert time.time() - t0 < 2.0
    assert manager.stop_training("ben") is True  # no id: his own running job
    assert wait_state(manager.queue, b1, ("stopped", "completed", "failed"), 10)["state"] == "stopped"

    # requeue: only the owner (or the teacher)
    with pytest.raises(PermissionError):
        manager.requeue_job(b1, user="ana")
    assert manager.queue.counts()["queued"] == 0
    again = manager.requeue_job(b1, user="ben")
    assert again["owner"] == "ben" and again["state"] in ("queued", "running")
    manager.cancel_job("ben", again["id"])

    # the teacher view
    with pytest.raises(PermissionError):
        manager.queue_status("ana")
    view = manager.queue_status("teach")
    listed = {j["id"]: j["owner"] for j in view["active"] + view["recent"]}
    assert listed[a1] == "ana" and listed[a2] == "ana" and listed[b1] == "ben"
    assert view["students"]["ana"]["annotations"] == 2 and view["students"]["ben"]["annotations"] == 1
    assert view["students"]["ana"]["jobs"] == 2 and view["students"]["ben"]["jobs"] == 2


def test_real_worker_trains_a_reward_model(tmp_path, managers):
    manager = managers(tmp_path)  # the default entry: alignment.serving.worker:run_job
    manager.start_workers()
    assert manager.dispatcher.backend.entry == backends.ENTRY
    job = manager.start_training("reward", preset="quick", user="ana", max_steps=1)
    done = wait_state(manager.queue, job["id"], ("completed", "failed", "stopped", "interrupted"), 240, poll=0.25)
    assert done["state"] == "completed", (done, (Path(done["run_dir"]) / "worker.log").read_text()[-3000:]
                                          if done["run_dir"] else None)
    run_dir = Path(done["run_dir"])
    assert run_dir.parent == tmp_path / "students" / "ana" / "runs" / "reward"
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert run_info(run_dir)["status"] == "completed"
    current = manager.training_status("ana")["current"]
    assert current["id"] == job["id"] and current["state"] == "completed"
    assert current["history"] and current["history"][-1]["step"] == 1
    assert current["log_tail"] and any("reward" in line for line in current["log_tail"])


# ---------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_local():
    """A private local Ray instance for this module (``RayBackend("local")``), shut down at the end."""
    pytest.importorskip("ray")
    import ray

    from alignment.serving.backends import RayBackend

    RayBackend("local")  # ray.init(num_cpus=2, ...)
    yield ray
    ray.shutdown()


def test_ray_backend_trains_a_reward_model(tmp_path, managers, ray_local):
    from alignment.serving.backends import RayBackend

    manager = managers(tmp_path, ray_address="local")
    manager.start_workers()
    assert isinstance(manager.dispatcher.backend, RayBackend)
    job = manager.start_training("reward", user="ana", max_steps=1)
    done = wait_state(manager.queue, job["id"], ("completed", "failed", "stopped", "interrupted"), 150, poll=0.25)
    assert done["state"] == "completed", done
    run_dir = Path(done["run_dir"])
    assert (run_dir / "adapter" / "adapter_config.json").is_file() and run_info(run_dir)["status"] == "completed"
    assert manager.queue_status(None)["backend"] == "ray"


def test_ray_job_stops(tmp_path, ray_local):
    from alignment.serving.backends import RayBackend

    queue = JobQueue(tmp_path / "jobs.sqlite")

    def prepare(job):
        return {"job_id": job["id"], "method": job["method"], "run_dir": str(tmp_path / "runs" / str(job["id"])),
                "target": "hang"}

    dispatcher = Dispatcher(queue, RayBackend("local", entry=f"{TARGETS}:hang"), prepare).start()
    try:
        job_id = submit(queue, "ana", "hang")
        pid = worker_pid(wait_running_with_progress(queue, job_id, timeout=120))
        assert alive(pid)
        took, job = _stop_and_time(queue, job_id)
        assert job["state"] == "stopped" and took < 3.0, took
        assert run_info(job["run_dir"])["status"] == "stopped"
        wait_for(lambda: not alive(pid), 10, what="the Ray worker running the task to end")
    finally:
        dispatcher.close()


def test_ray_stop_of_a_job_waiting_for_resources(tmp_path, ray_local):
    """A Ray job that has not started yet (it waits for a free CPU/GPU on the cluster) is stopped like any other,
    and stopping it does not hold up the rest of the queue."""
    from alignment.serving.backends import RayBackend

    queue = JobQueue(tmp_path / "jobs.sqlite")

    def prepare(job):
        return {"job_id": job["id"], "method": job["method"], "run_dir": str(tmp_path / "runs" / str(job["id"])),
                "target": "hang"}

    # 3 CPUs per task on a 2-CPU instance: Ray keeps the task pending (like a job waiting for a busy GPU)
    dispatcher = Dispatcher(queue, RayBackend("local", num_cpus=3, entry=f"{TARGETS}:hang"), prepare,
                            workers=2).start()
    try:
        waiting = submit(queue, "ana", "hang")
        wait_state(queue, waiting, "running", 10)  # handed to Ray
        time.sleep(0.5)
        assert not Path(queue.get(waiting)["run_dir"]).exists()  # Ray has not started it
        queue.request_stop(waiting)
        other = submit(queue, "ben", "hang")  # a free worker slot: it is handed to Ray at the next poll
        assert wait_state(queue, other, ("running", "stopped", "failed"), 3)["state"] == "running"
        assert wait_state(queue, waiting, ("stopped", "failed", "completed"), 3)["state"] == "stopped"
    finally:
        dispatcher.close()
