"""The Train tab in a real browser (headless Debian chromium, Playwright), on the tiny model: what a student sees
while a run trains and when it ends.

One served app, one sequence: a 2-step reward model (the log tail shows "completed" without scrolling), then a
PPO run slowed down deterministically in its worker process (each rollout waits ``SAMPLING_S`` before sampling,
so a step is long enough to watch): the progress label ticks every second and names the phase; a second page of
the same student opened meanwhile shows the running job and its settings; Stop says "stopping" at once and the
run ends "stopped" with its adapter saved; on a phone (390x844) the chart's titles neither overlap nor leave the
screen.
"""

import json
import re

import pytest

from conftest import needs_chromium, open_page, open_tab


pytestmark = needs_chromium


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from conftest import launch_app

    manager, demo, url = launch_app(tmp_path_factory.mktemp("train-app"))
    yield manager, url
    demo.close()


def open_train(browser, url, width=1280, height=800):
    page = open_page(browser, url, width, height)
    open_tab(page, "4 · Train")
    page.locator("#train-start").wait_for()
    return page


def label(page) -> str:
    return page.locator("#train-progress").inner_text()


def elapsed_s(text: str) -> int:
    m = re.search(r"(?:(\d+) min )?(\d+) s elapsed", text)
    assert m, text
    return int(m.group(1) or 0) * 60 + int(m.group(2))


def wait_status(page, text: str, timeout=60_000):
    page.wait_for_function("(t) => document.querySelector('#train-status').innerText.includes(t)", arg=text,
                           timeout=timeout)


def test_train_tab_while_and_after_a_run(app, browser, monkeypatch):
    manager, url = app
    page = open_train(browser, url)

    # 2. a short reward model: at the end the newest line, "completed", is the first one, with no scrolling
    page.locator("#train-max_steps input").fill("2")
    page.locator("#train-start").click()
    wait_status(page, "completed")
    log = page.locator("#train-log textarea")
    page.wait_for_function("() => document.querySelector('#train-log textarea').value.includes('completed')")
    first = log.input_value().splitlines()[0]
    assert re.search(r"job \d+: completed after", first), first
    assert log.evaluate("el => el.scrollTop") == 0  # visible where the box starts

    # 3. PPO with slow rollouts: the label ticks within a step and names the phase
    monkeypatch.setattr(manager.dispatcher.backend, "entry", "tests.app_worker_targets:slow_ppo")
    page.locator("#train-method label", has_text="PPO").click()
    page.locator("#train-clip_range").wait_for(state="visible")  # the PPO defaults have arrived
    page.locator("#train-max_steps input").fill("30")
    page.locator("#train-start").click()
    page.wait_for_function("() => document.querySelector('#train-progress').innerText.includes('sampling')")
    before = label(page)
    # the label ticks within the step: its elapsed seconds grow within 3 s (the page refreshes it every second;
    # two refreshes may land less than a second apart on a busy machine, so a fixed wait could see no change)
    page.wait_for_function("(before) => { const m = document.querySelector('#train-progress').innerText"
                           ".match(/(\\d+) s elapsed/); return m !== null && Number(m[1]) > before; }",
                           arg=elapsed_s(before), timeout=3000)
    after = label(page)
    assert "step 0/30" in before and "step 0/30" in after, (before, after)  # no step ended in between
    assert "sampling" in after and "estimating time left" in before
    assert elapsed_s(after) > elapsed_s(before), (before, after)
    page.wait_for_function("() => /step 1\\/30 .*about .* left/"
                           ".test(document.querySelector('#train-progress').innerText)")

    # 8. another page of the same student shows the running job and its settings
    other = open_train(browser, url)
    wait_status(other, "Training PPO")
    assert "steps 30" in other.locator("#train-status").inner_text()
    other.wait_for_function("() => document.querySelector('#train-jobs').innerText.includes('running')")
    other.close()

    # 4. Stop: "stopping" right away, until the run has ended; then a valid stopped run. Pressed early in a
    # rollout, so that the run is still busy (the slow sampling above does not check the stop flag) when the page
    # answers.
    page.wait_for_function("() => /sampling [01] s/.test(document.querySelector('#train-progress').innerText)")
    page.locator("#train-stop").click()
    wait_status(page, "Stopping", timeout=2_000)
    wait_status(page, "stopped", timeout=5_000)  # within the 2 s of the queue's stop, and a poll
    job = manager.training_status()["current"]
    run = manager.output_dir / job["run"]
    info = json.loads((run / "run_info.json").read_text())
    assert job["state"] == "stopped" and info["status"] == "stopped" and info["steps_done"] < 30
    assert (run / "adapter" / "adapter_config.json").is_file()  # graceful: it kept what it learned
    page.wait_for_function("() => document.querySelector('#train-log textarea').value.split('\\n')[0]"
                           ".includes('stopped after')")
    page.close()


def test_chart_titles_fit_a_phone(app, browser):
    # after the PPO run above: the chart has five panels; at 390x844 no title overlaps another or leaves the screen
    page = open_train(browser, app[1], 390, 844)
    page.wait_for_function("() => document.querySelectorAll('#train-chart .infolayer .annotation-text').length >= 4")
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll(
            '#train-chart .infolayer .annotation-text, #train-chart .infolayer .gtitle, #train-chart label'))
        .map(el => { const r = el.getBoundingClientRect();
                     return {text: el.textContent.trim(), left: r.left, right: r.right, top: r.top,
                             bottom: r.bottom}; })""")
    titles = [b["text"] for b in boxes]
    assert {"reward", "KL", "clip fractions", "entropy", "Live metrics"} <= set(titles), titles
    assert any(re.fullmatch(r"PPO: \d+ steps? logged", t) for t in titles), titles
    for b in boxes:
        assert 0 <= b["left"] and b["right"] <= 390, b
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = min(a["right"], b["right"]) > max(a["left"], b["left"]) and \
                min(a["bottom"], b["bottom"]) > max(a["top"], b["top"])
            assert not overlap, (a, b)
    page.close()
