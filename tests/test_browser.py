"""What a student clicks, in a real browser: headless Chromium (Debian package) driven by Playwright.

A student annotates one pair (with the keyboard), starts a short training and watches the chart update,
then compares the answers of the models. Needs /usr/bin/chromium (``.ci/run`` installs it); skipped locally
without it, never skipped in CI.
"""

import json

import pytest

from conftest import needs_chromium, open_page, open_tab

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def page(served_app, browser):
    pg = open_page(browser, served_app[1], 1280, 1400)
    yield pg
    pg.close()


# Header cells whose longest word is wider than the cell: the text breaks inside words, letter by letter.
SQUEEZED_HEADERS = """(sel) => {
  const out = [];
  for (const th of document.querySelectorAll(sel + ' th')) {
    const text = th.innerText.trim();
    if (!text) continue;
    const el = [...th.querySelectorAll('*')].reverse().find(e => e.innerText && e.innerText.trim() === text) || th;
    const span = document.createElement('span');
    span.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap';
    span.style.font = getComputedStyle(el).font;
    document.body.appendChild(span);
    let widest = 0;
    for (const w of text.split(/\\s+/)) { span.textContent = w; widest = Math.max(widest, span.getBoundingClientRect().width); }
    span.remove();
    if (widest > el.getBoundingClientRect().width + 1) out.push(text);
  }
  return out;
}"""

# Header cells that end right of the viewport while no ancestor lets the user scroll to them.
UNREACHABLE_HEADERS = """(sel) => [...document.querySelectorAll(sel + ' th')].filter(th => {
  if (th.getBoundingClientRect().right <= window.innerWidth + 1) return false;
  for (let e = th.parentElement; e; e = e.parentElement) {
    const ox = getComputedStyle(e).overflowX;
    if ((ox === 'auto' || ox === 'scroll') && e.scrollWidth > e.clientWidth) return false;
  }
  return true;
}).map(th => th.innerText.trim())"""


def _points(page) -> int:
    return page.evaluate("""() => {
        const el = document.querySelector('#train-chart .js-plotly-plot');
        return el && el.data ? Math.max(0, ...el.data.map(t => (t.x || []).length)) : 0;
    }""")


STEPS = 150  # long enough (several seconds on the tiny model) for the 1 s chart timer to fire during the run


def test_student_annotates_trains_and_compares(served_app, page):
    manager, _ = served_app
    # annotate one pair, choosing with the keyboard
    open_tab(page, "3 · Annotate")
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
    open_tab(page, "4 · Train")
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

    # compare: answers side by side with their scores (the class has no reward model: the student's run is hers)
    open_tab(page, "5 · Compare")
    page.locator("#cmp-prompt textarea").fill("How do I boil an egg?")
    page.locator("#cmp-go").click()
    page.wait_for_function("() => document.querySelector('#cmp-base textarea').value.length > 0")
    assert page.locator("#cmp-dpo textarea").input_value() == "(not trained yet)"
    first_cell = "() => document.querySelector('#cmp-scores [data-testid=cell-0-0]')?.innerText.trim() === 'base'"
    page.wait_for_function(first_cell)
    headers = [h.strip() for h in page.locator("#cmp-scores th").all_inner_texts()][1:4]
    assert headers == ["proxy RM (PPO/GRPO trained on it)", "gold RM (no model trained on it)", "rules (1 = passes)"]
    cells = [c.strip() for c in page.locator("#cmp-scores [role=gridcell][data-row='0']").all_inner_texts()]
    assert cells[1:3] == ["—", "—"] and cells[3] in ("0.000", "0.500", "1.000")  # a built-in question's rule (steps)
    page.get_by_text("no reward model yet").wait_for()
    assert page.get_by_label("Max new tokens").first.input_value() == "96"  # room for a complete short answer
    assert "BASE · to: How do I boil an egg?" in page.locator("#cmp-base").inner_text()  # the column names its prompt
    assert page.locator("#cmp-diff").inner_text().strip() == ""  # only base answered: nothing to compare against
    page.locator("#cmp-prompt textarea").fill("Tell me about your day.")  # a question without a rule
    page.locator("#cmp-go").click()
    page.get_by_text("this prompt has no rule").wait_for()
    cells = [c.strip() for c in page.locator("#cmp-scores [role=gridcell][data-row='0']").all_inner_texts()]
    assert cells[0] == "base" and cells[3] == "—"


def test_annotation_feedback_keys_name_first_and_undo(served_app, page):
    """Issue 14, items 1, 9, 10: a refused answer shows its reason in the status line only and the next action
    clears it; the keys work after a click on a radio button; no item before a name; undo shows the item again."""
    manager, _ = served_app
    open_tab(page, "3 · Annotate")
    status = page.locator("#ann-status")
    page.get_by_label("Your name (annotator)").fill("")
    page.get_by_role("button", name="Load next item (n)").click()
    status.get_by_text("Enter your name first").wait_for()

    page.get_by_label("Your name (annotator)").fill("kb-student")
    page.get_by_role("button", name="Load next item (n)").click()
    resp_a = page.get_by_label("Response A")
    page.wait_for_function("(el) => el.value.length > 0", arg=resp_a.element_handle())
    first_item = resp_a.input_value()

    rationale = page.locator("#ann-rationale textarea")
    rationale.fill("x" * 2100)  # over the 2,000-character limit: refused
    page.get_by_role("button", name="A is better (1)").click()
    status.get_by_text("rationale").wait_for()
    assert "⚠️" in status.inner_text()
    assert page.locator("#ann-rationale").get_by_text("Error").count() == 0  # no badge on the text box
    assert rationale.input_value() == "x" * 2100 and resp_a.input_value() == first_item  # nothing lost
    assert not [r for r in manager.annotations.records() if r["annotator"] == "kb-student"]

    rationale.fill("clear and polite")
    page.get_by_label("pairwise").click()  # focus stays on the radio button; the keys must still work
    assert page.evaluate("() => document.activeElement.type") == "radio"
    page.keyboard.press("2")  # "B is better"
    status.get_by_text("Saved (pairwise: B)").wait_for()
    assert "⚠️" not in status.inner_text()  # the next action replaced the message
    assert page.locator("#ann-keys").get_by_text("undo").count() == 1  # the keys are listed on the page
    page.wait_for_function("(args) => args[0].value.length > 0 && args[0].value !== args[1]",
                           arg=[resp_a.element_handle(), first_item])

    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("u")
    status.get_by_text("here is that item again").wait_for()
    page.wait_for_function("(args) => args[0].value === args[1]", arg=[resp_a.element_handle(), first_item])
    assert rationale.input_value() == "clear and polite"
    assert not [r for r in manager.annotations.records() if r["annotator"] == "kb-student"]


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_tables_fit_or_scroll(served_app, browser, width, height):
    """Issue 14, items 16-17: no table column off-screen without a way to scroll to it, and no header broken
    letter by letter, on a laptop and on a phone."""
    pg = open_page(browser, served_app[1], width, height)
    try:
        open_tab(pg, "2 · Data")
        pg.locator("#data-preview th").first.wait_for()
        open_tab(pg, "5 · Compare")
        pg.locator("#cmp-prompt textarea").fill("Name a primary color.")
        pg.locator("#cmp-go").click()
        pg.wait_for_function("() => document.querySelector('#cmp-base textarea').value.length > 0")
        for sel in ("#cmp-scores", "#arena-board"):
            assert pg.evaluate(UNREACHABLE_HEADERS, sel) == [], sel
            assert pg.evaluate(SQUEEZED_HEADERS, sel) == [], sel
        open_tab(pg, "2 · Data")
        assert pg.evaluate(UNREACHABLE_HEADERS, "#data-preview") == []
        assert pg.evaluate(SQUEEZED_HEADERS, "#data-preview") == []
        if width >= 1280:  # a laptop shows every column without scrolling
            right = pg.evaluate("() => Math.max(...[...document.querySelectorAll('#data-preview th')]"
                                ".map(th => th.getBoundingClientRect().right))")
            assert right <= width
    finally:
        pg.close()

