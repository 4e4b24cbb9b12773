"""A class at once in a real browser (headless Debian chromium, Playwright), on the tiny model, with logins.

One served app (one training worker), one sequence: ana and ben, each logged in in their own browser context,
press Start on a 1-step reward model at about the same moment; both are accepted, and one of them waits in the
queue (its page says so) while the other trains. The teacher's page shows the whole queue with both students'
jobs; a student's page shows neither the teacher's accordion nor the class-model checkbox. Both jobs complete,
each student's page lists only their own job, and each run lies in that student's own workspace on disk. Then
ana trains a 1-step DPO and compares with it (her run, picked as "mine: ..." in Compare), while ben, who has no
DPO run, is offered only the class model.
"""

import re
import time

import pytest

from conftest import needs_chromium, open_tab


pytestmark = needs_chromium

USERS = {"ana": "pw-ana", "ben": "pw-ben", "teacher": "pw-teacher"}
VIEWPORT = {"width": 1280, "height": 900}
QUEUED = re.compile(r"number \d+ in the queue")


@pytest.fixture(scope="module")
def class_app(tmp_path_factory):
    from conftest import launch_app
    from ui.login_guard import guarded_launch_kwargs

    out = tmp_path_factory.mktemp("class-browser-app")
    manager, demo, url = launch_app(out, launch_kwargs=guarded_launch_kwargs(list(USERS.items()), failure_delay_s=0.0),
                                    teachers=["teacher"])
    yield manager, url
    demo.close()
    manager.close()


@pytest.fixture()
def log_in(class_app, browser):
    """``log_in(user)``: a page in a browser context of its own (own cookies), logged in as ``user`` through
    Gradio's login form, on the Train tab once the page has loaded (the login fills the read-only name box)."""
    contexts = []

    def open_as(user):
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(class_app[1])
        page.get_by_label("username").fill(user)
        page.get_by_label("password").fill(USERS[user])
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="1 · Learn").wait_for()
        open_tab(page, "4 · Train")
        page.wait_for_function("(u) => document.querySelector('#train-name textarea')?.value === u", arg=user)
        return page

    yield open_as
    for context in contexts:
        context.close()


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, part: str, timeout=60_000):
    page.wait_for_function("([s, t]) => document.querySelector(s)?.innerText.includes(t)", arg=[selector, part],
                           timeout=timeout)


def wait_ended(page, label: str, timeout=90_000) -> str:
    """Wait until the page's newest job (``label``: "Reward model", "DPO") has ended; its status line."""
    page.wait_for_function("(l) => new RegExp(l + ' (completed|failed|stopped|cancelled|interrupted)')"
                           ".test(document.querySelector('#train-status').innerText)", arg=label, timeout=timeout)
    return text(page, "#train-status")


def dropdown_options(page, elem_id: str) -> list[str]:
    """The labels a Gradio dropdown offers (opened, read, closed again)."""
    page.locator(f"#{elem_id} input").click()
    options = page.locator(f"#{elem_id} li[data-testid='dropdown-option']")
    options.first.wait_for()
    labels = [o.get_attribute("aria-label") for o in options.all()]
    page.locator(f"#{elem_id} input").blur()
    options.first.wait_for(state="detached")
    return labels


def test_two_students_and_the_teacher_in_their_own_browsers(class_app, log_in):
    manager = class_app[0]
    ana, ben, teacher = (log_in(u) for u in ("ana", "ben", "teacher"))
    students = {"ana": ana, "ben": ben}

    # 2. (before any job) the teacher's controls only on the teacher's page
    teacher.locator("#train-teacher").wait_for(state="visible")
    assert teacher.locator("#train-class-model").is_visible()
    for page in students.values():
        assert page.locator("#train-teacher").is_hidden() and page.locator("#train-class-model").is_hidden()

    # 1. both press Start on a 1-step reward model, one right after the other; each page records what it shows
    for page in students.values():
        page.locator("#train-max_steps input").fill("1")
        page.evaluate("""() => { window.seen = [];  // [time, status, progress label] every 100 ms
            window.setInterval(() => window.seen.push([Date.now() / 1000,
                document.querySelector('#train-status').innerText,
                document.querySelector('#train-progress').innerText]), 100); }""")
    for page in students.values():
        page.locator("#train-start").click()
    for page in students.values():
        page.wait_for_function("() => document.querySelector('#train-status').innerText.trim() !== ''")
        assert "⚠️" not in text(page, "#train-status"), text(page, "#train-status")  # accepted, not refused

    # 2. the teacher sees both students' jobs in the whole queue
    teacher.wait_for_function("() => ['ana', 'ben'].every(u => document.querySelector('#train-queue').innerText"
                              ".includes(u))", timeout=10_000)

    # 3. both complete, each in its student's page
    for page in students.values():
        status = wait_ended(page, "Reward model")
        assert "completed" in status, status

    # 4. on disk: each run in its student's own workspace, with its adapter
    runs = {name: manager.output_dir / manager.training_status(name)["current"]["run"] for name in students}
    for name, run in runs.items():
        assert run.parent == manager.output_dir / "students" / name / "runs" / "reward", run
        assert (run / "adapter" / "adapter_config.json").is_file()
    assert runs["ana"] != runs["ben"]

    # 3. each page lists only that student's job
    for name, page in students.items():
        wait_text(page, "#train-jobs", f"students/{name}/runs/reward/")
    assert "students/ben" not in ana.locator("body").inner_text()
    assert "students/ana" not in ben.locator("body").inner_text()

    # 1. (checked now that both ended) one page said "in the queue" for at least a second while the other
    # student's job was running and its own had not started (the browser and the server share the clock)
    jobs = {j["owner"]: j for j in manager.queue.jobs(None)}
    assert set(jobs) == {"ana", "ben"} and all(j["method"] == "reward" for j in jobs.values()), jobs
    seen = {name: page.evaluate("() => window.seen") for name, page in students.items()}
    waited = {}
    for name, other in (("ana", "ben"), ("ben", "ana")):
        times = [t for t, status, progress in seen[name] if QUEUED.search(f"{status} {progress}")
                 and jobs[other]["started_at"] <= t <= min(jobs[other]["finished_at"], jobs[name]["started_at"])]
        waited[name] = max(times) - min(times) if times else 0.0
    assert max(waited.values()) >= 1.0, (waited, jobs, seen)

    # 5. ana trains a 1-step DPO and compares with her own run
    ana.locator("#train-method label", has_text="DPO").click()
    ana.locator("#train-beta").wait_for(state="visible")  # the DPO defaults have arrived
    ana.locator("#train-max_steps input").fill("1")
    ana.locator("#train-start").click()
    status = wait_ended(ana, "DPO")
    assert "DPO completed" in status, status

    open_tab(ana, "5 · Compare")
    ana.locator("#cmp-runs").get_by_text("Which runs").click()
    ana.locator("#cmp-refresh").click()
    dpo_run = next(r for r in manager.list_runs("ana") if r["method"] == "dpo")
    mine = f"mine: {dpo_run['key'].rsplit('/', 1)[-1]}"
    deadline = time.time() + 10
    while mine not in (labels := dropdown_options(ana, "cmp-run-dpo")) and time.time() < deadline:
        ana.wait_for_timeout(200)  # the refresh has not answered yet
    assert mine in labels, labels
    ana.locator("#cmp-run-dpo input").click()
    ana.locator(f"#cmp-run-dpo li[aria-label='{mine}']").click()
    ana.locator("#cmp-prompt textarea").fill("Name a colour.")
    ana.locator("#cmp-go").click()
    ana.wait_for_function("() => document.querySelector('#cmp-dpo textarea').value.trim() !== ''", timeout=30_000)
    answer = ana.locator("#cmp-dpo textarea").input_value()
    assert "(not trained yet)" not in answer and "training or queued" not in answer, answer
    assert ana.locator("#cmp-base textarea").input_value().strip()

    # ben has a reward run of his own but no DPO run: after a refresh, his DPO choice is the class model only
    open_tab(ben, "5 · Compare")
    ben.locator("#cmp-runs").get_by_text("Which runs").click()
    ben.locator("#cmp-refresh").click()
    deadline = time.time() + 10
    while not any(lab.startswith("mine:") for lab in dropdown_options(ben, "cmp-run-reward")):
        assert time.time() < deadline, "ben's own reward model never appeared in Compare"
        ben.wait_for_timeout(200)
    labels = dropdown_options(ben, "cmp-run-dpo")
    assert labels and all(lab.startswith("class model") for lab in labels), labels
