"""The persistent, fair training-job queue (alignment.serving.queue)."""

import threading
import time

import pytest

from alignment.serving.queue import JobNotFound, JobQueue, QueueFull


@pytest.fixture()
def q(tmp_path):
    return JobQueue(tmp_path / "jobs.sqlite3")


def submit(q, owner, label, **kw):
    return q.submit(owner, "dpo", {"beta": 0.1, "who": label}, total_steps=10, label=label, **kw)


def claim_all(q):
    out = []
    while (job := q.claim_next("w")) is not None:
        out.append(job["label"])
    return out


def test_round_robin_across_students(q):
    for label in ("A1", "A2", "B1", "B2", "C1", "C2"):
        submit(q, label[0], label)
    assert [j["label"] for j in q.order()] == ["A1", "B1", "C1", "A2", "B2", "C2"]
    assert [j["position"] for j in q.order()] == [1, 2, 3, 4, 5, 6]
    assert claim_all(q) == ["A1", "B1", "C1", "A2", "B2", "C2"]


def test_just_served_goes_to_the_back(q):
    submit(q, "A", "A1")
    submit(q, "A", "A2")
    assert q.claim_next()["label"] == "A1"
    submit(q, "B", "B1")          # submitted after A2, but B was never served
    assert [j["label"] for j in q.order()] == ["B1", "A2"]
    assert q.claim_next()["label"] == "B1"
    submit(q, "C", "C1")
    # A was served longer ago than B; C never: C1, A2, then B's next
    submit(q, "B", "B2")
    assert claim_all(q) == ["C1", "A2", "B2"]


def test_waiting_limit_per_student(q):
    submit(q, "A", "A1")
    submit(q, "A", "A2")
    with pytest.raises(QueueFull, match="2"):
        submit(q, "A", "A3")
    submit(q, "B", "B1")                       # other students are not affected
    assert q.claim_next()["label"] == "A1"     # the running job does not count
    assert submit(q, "A", "A3")["state"] == "queued"
    with pytest.raises(QueueFull):
        submit(q, "A", "A4")
    assert q.counts()["queued"] == 3 and q.counts()["running"] == 1


def test_restart_recovers_and_requeues(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    first = JobQueue(path)
    for label in ("A1", "B1", "C1"):
        submit(first, label[0], label)
    running = first.claim_next("gpu0")
    assert running["label"] == "A1" and running["worker"] == "gpu0" and running["started_at"] is not None

    q = JobQueue(path)                         # the server restarted
    assert q.recover() == [running["id"]]
    dead = q.get(running["id"])
    assert dead["state"] == "interrupted" and dead["finished_at"] is not None and "server stopped" in dead["error"]
    assert [j["label"] for j in q.order()] == ["B1", "C1"]
    assert q.recover() == []

    again = q.requeue(dead["id"])
    assert again["id"] != dead["id"] and again["state"] == "queued"
    assert (again["owner"], again["method"], again["spec"], again["label"]) == ("A", "dpo", {"beta": 0.1, "who": "A1"}, "A1")
    assert claim_all(q) == ["B1", "C1", "A1"]  # A was served before the restart: its job goes last
    with pytest.raises(ValueError, match="only an interrupted"):
        q.requeue(again["id"])                 # running


def test_cancel_stop_and_finish(q):
    a = submit(q, "A", "A1")
    b = submit(q, "B", "B1")
    assert q.claim_next()["id"] == a["id"]
    cancelled = q.cancel(b["id"])
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"] is not None
    assert q.claim_next() is None

    stopping = q.cancel(a["id"])
    assert stopping["state"] == "running" and stopping["stop_requested"] is True
    first_request = stopping["stop_requested_at"]
    assert q.request_stop(a["id"])["stop_requested_at"] == first_request   # idempotent

    done = q.finish(a["id"], "stopped")
    assert done["state"] == "stopped" and done["finished_at"] is not None
    assert q.finish(a["id"], "failed", "boom")["state"] == "stopped"        # the first state stays
    assert q.get(a["id"])["error"] is None
    assert q.cancel(a["id"])["state"] == "stopped"
    assert q.cancel(b["id"])["state"] == "cancelled"
    with pytest.raises(ValueError):
        q.finish(a["id"], "cancelled")
    with pytest.raises(JobNotFound):
        q.get(999)


def test_durations_and_run_dir(q):
    jobs = [submit(q, o, o) for o in "ABC"]
    for job in jobs:
        q.claim_next()
        q.set_run_dir(job["id"], f"runs/{job['label']}")
    q.finish(jobs[0]["id"], "completed")
    q.finish(jobs[1]["id"], "failed", "out of memory")
    q.finish(jobs[2]["id"], "completed")
    d = q.durations("dpo")
    assert len(d) == 2 and all(x >= 0 for x in d)
    assert q.durations("ppo") == []
    assert q.get(jobs[1]["id"])["run_dir"] == "runs/B" and q.get(jobs[1]["id"])["error"] == "out of memory"
    assert q.running() == [] and q.counts()["completed"] == 2


def test_concurrent_submit_and_claim(q):
    per_owner, owners = 6, [f"s{i}" for i in range(8)]
    q.max_waiting_per_owner = per_owner
    claimed, submitted, done = [], [], threading.Event()
    lock = threading.Lock()

    def student(owner):
        for k in range(per_owner):
            job = submit(q, owner, f"{owner}-{k}")
            with lock:
                submitted.append(job["id"])

    def worker(name):
        while True:
            all_submitted = done.is_set()        # read before claiming: an empty queue then means the end
            job = q.claim_next(name)
            if job is None:
                if all_submitted:
                    return
                time.sleep(0.001)
                continue
            with lock:
                claimed.append(job["id"])
            q.finish(job["id"], "completed")

    students = [threading.Thread(target=student, args=(o,)) for o in owners]
    workers = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in students + workers:
        t.start()
    for t in students:
        t.join()
    done.set()
    for t in workers:
        t.join(timeout=60)
    assert len(submitted) == 48
    assert sorted(claimed) == sorted(submitted)          # each exactly once, none lost
    assert {j["worker"] for j in q.jobs(limit=100)} <= {"w0", "w1", "w2", "w3"}
    assert q.counts()["completed"] == 48 and q.counts()["queued"] == 0


def test_positions_match_order(q):
    for label in ("A1", "A2", "B1", "C1", "C2"):
        submit(q, label[0], label)
    q.claim_next()                                        # A1 runs
    order = {j["id"]: j["position"] for j in q.order()}
    assert sorted(order.values()) == [1, 2, 3, 4]
    everybody = q.jobs()
    assert [j["label"] for j in everybody] == ["C2", "C1", "B1", "A2", "A1"]   # newest first
    for owner in "ABC":
        for job in q.jobs(owner):
            assert job["position"] == order.get(job["id"])
    assert q.jobs("A")[1]["position"] is None and q.jobs("A")[1]["state"] == "running"
    assert q.get(q.jobs("A")[0]["id"])["position"] == order[q.jobs("A")[0]["id"]]
    assert len(q.jobs(limit=2)) == 2
