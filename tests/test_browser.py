"""What a student clicks, in a real browser: headless Chromium (Debian package) driven by Playwright.

A student annotates one pair (with the keyboard), starts a short training and watches the chart update,
then compares the answers of the models. Needs /usr/bin/chromium (``.ci/run`` installs it); skipped locally
without it, never skipped in CI.
"""

import json
import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(served_app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1280, "height": 1400})
        pg.set_default_timeout(60_000)
        pg.goto(served_app[1])
        pg.get_by_role("tab", name="3 · Annotate").wait_for()
        yield pg
        browser.close()


def _points(page) -> int:
    return page.evaluate("""() => {
        const el = document.querySelector('#train-chart .js-plotly-plot');
        return el && el.data ? Math.max(0, ...el.data.map(t => (t.x || []).length)) : 0;
    }""")


STEPS = 150  # long enough (several seconds on the tiny model) for the 1 s chart timer to fire during the run


def test_student_annotates_trains_and_compares(served_app, page):
    manager, _ = served_app
    # annotate one pair, choosing with the keyboard
    page.get_by_role("tab", name="3 · Annotate").click()
    page.get_by_label("Your name (annotator)").fill("browser-student")
    page.get_by_role("button", name="Load next item (n)").click()
    resp_a = page.get_by_label("Response A")
    page.wait_for_function("(el) => el.value.length > 0", arg=resp_a.element_handle())
    shown = resp_a.input_value()
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")  # "A is better"
    page.get_by_text("Saved (pairwise: A)").wait_for()
    records = json.loads(manager.annotations.flush().read_text())["annotations"]
    mine = [r for r in records if r["annotator"] == "browser-student"]
    assert len(mine) == 1 and mine[0]["choice"] == "A" and mine[0]["responses"][0] == shown

    # train: a short reward-model run, watching the live chart grow
    page.get_by_role("tab", name="4 · Train").click()
    steps = page.locator("#train-max_steps input")
    steps.fill(str(STEPS))
    page.locator("#train-start").click()
    seen = set()
    for _ in range(480):
        n = _points(page)
        if n:
            seen.add(n)
        if "completed" in page.locator("#train-status").inner_text():
            break
        page.wait_for_timeout(250)
    page.wait_for_function("() => { const el = document.querySelector('#train-chart .js-plotly-plot');"
                           " return el && el.data && Math.max(...el.data.map(t => t.x.length)) === " + str(STEPS) + "; }")
    assert len(seen) >= 2, f"the chart never updated while training ran (point counts seen: {seen})"
    assert f"step {STEPS}/{STEPS}" in page.locator("#train-log textarea").input_value()

    # compare: answers side by side with reward-model scores
    page.get_by_role("tab", name="5 · Compare").click()
    page.locator("#cmp-prompt textarea").fill("How do I boil an egg?")
    page.locator("#cmp-go").click()
    page.wait_for_function("() => document.querySelector('#cmp-base textarea').value.length > 0")
    assert page.locator("#cmp-dpo textarea").input_value() == "(not trained yet)"
    page.get_by_text("reward score").wait_for()
