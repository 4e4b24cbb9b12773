"""What a student sees in the Report and Learn tabs, in a real browser (headless Debian chromium, Playwright).

The report is built on the tiny model after a 2-step reward model, a 2-step DPO and a 1-step GRPO run (unequal
budgets on purpose): one progress bar with named phases while it builds, each method's steps and status in the
headline, the unequal-budget caveat, a download when the file *name* is clicked, tables and formulas that fit or
scroll on a phone (390x844) and a desktop (1280x800), and the Learn tab's formula, code lines and worked number.
Needs /usr/bin/chromium; skipped locally without it, never skipped in CI.
"""

import json

import pytest

from conftest import needs_chromium, open_page


pytestmark = needs_chromium

VIEWPORTS = [(390, 844), (1280, 800)]


@pytest.fixture(scope="module")
def trained_app(tmp_path_factory):
    """(manager, url): the app on the tiny model, fresh output folder, reward + DPO (2 steps) + GRPO (1 step)."""
    from conftest import launch_app

    manager, demo, url = launch_app(tmp_path_factory.mktemp("report_app"))
    manager.train_method("reward", max_steps=2)
    manager.train_method("dpo", max_steps=2)
    manager.train_method("grpo", max_steps=1)
    yield manager, url
    demo.close()


@pytest.fixture(scope="module")
def page(trained_app, browser):
    pg = open_page(browser, trained_app[1], 1280, 800, accept_downloads=True)
    pg.get_by_role("tab", name="6 · Report").wait_for()
    yield pg
    pg.close()


def _open_tab(page, name: str, width: int, height: int) -> None:
    """Open tab ``name`` at desktop width (on a phone Gradio folds the tabs into a menu), then resize."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("tab", name=name).click()
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_timeout(300)  # layout after the resize


# Visible progress bars (Gradio's status tracker draws one .progress-level per output it covers).
COUNT_BARS = """() => [...document.querySelectorAll('.progress-level')]
    .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height > 0).length"""
PROGRESS_TEXT = """() => [...document.querySelectorAll('.progress-level')].map(e => e.textContent.trim()).join(' | ')"""


def test_report_builds_with_one_progress_bar_and_honest_headline(trained_app, page):
    _open_tab(page, "6 · Report", 1280, 800)
    page.locator("#report-build").click()
    counts, texts = [], set()
    for _ in range(1200):  # poll every 50 ms until the headline has the models (about 5 s on the tiny model)
        n = page.evaluate(COUNT_BARS)
        counts.append(n)
        if n:
            texts.add(page.evaluate(PROGRESS_TEXT))
        if n == 0 and "grpo" in page.locator("#report-headline").inner_text():
            break
        page.wait_for_timeout(50)
    assert max(counts) == 1, f"{max(counts)} progress bars at once (one expected, on the status line)"
    shown = " ".join(texts)
    assert "generating answers: batch 1 of 1, token" in shown, shown
    assert any(phase in shown for phase in ("KL to base", "scoring")), shown

    headers = page.locator("#report-headline th").all_inner_texts()
    assert any("steps done / budget" in h for h in headers) and any(h.strip() == "status" for h in headers)
    table = page.locator("#report-headline").inner_text()
    assert "2/2" in table and "1/1" in table and "completed" in table and "reference" in table
    status = page.locator("#report-status").inner_text()
    assert "Unequal training budgets" in status and "DPO 2/2 steps" in status and "GRPO 1/1 steps" in status
    assert "scored by the reward model trained in this run" in status and "favours it" in status


def test_clicking_a_file_name_downloads_it(trained_app, page):
    manager, _ = trained_app
    if not (manager.output_dir / "class" / "final_summary.json").is_file():
        manager.build_report()
    _open_tab(page, "6 · Report", 1280, 800)
    name = page.locator("#report-files td.filename").first
    name.wait_for()
    expected = name.get_attribute("aria-label")
    name.scroll_into_view_if_needed()
    box = name.bounding_box()
    with page.expect_download(timeout=10_000) as dl:  # a student's click on the middle of the name
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    download = dl.value
    assert download.suggested_filename == expected == "alignment_comparison_report.json"
    assert "evaluation" in json.loads(open(download.path(), encoding="utf-8").read())


# Header cells of the headline that a student cannot reach: outside the viewport and not inside a container that
# scrolls sideways to them.
UNREACHABLE_HEADERS = """() => {
  const vw = document.documentElement.clientWidth;
  const scroller = el => { for (let a = el.parentElement; a; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === 'auto' || ox === 'scroll') && a.scrollWidth > a.clientWidth) return a; } return null; };
  return [...document.querySelectorAll('#report-headline th')].filter(th => {
    const r = th.getBoundingClientRect();
    if (r.width === 0) return true;
    if (r.left >= -1 && r.right <= vw + 1) return false;
    const s = scroller(th);
    if (!s) return true;
    const sr = s.getBoundingClientRect();
    const right = r.right - sr.left + s.scrollLeft;  // the cell's right edge in the scroller's content
    return !(sr.left >= -1 && sr.right <= vw + 1 && right <= s.scrollWidth + 1);
  }).map(th => th.textContent.trim());
}"""

# Words of a table's cells laid out over more than one line (broken inside the word, e.g. letter by letter).
BROKEN_WORDS = """(selector) => {
  const out = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/[^\\s\\-\\/]+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) out.push(m[0]);
      }
    }
  }
  return out;
}"""

# The first formula on the Learn tab: fully inside the viewport, or in its own box (inside the viewport) that
# scrolls sideways over the whole formula, so the formula scrolls and the text around it does not.
FORMULA_HIDDEN = """() => {
  const vw = document.documentElement.clientWidth;
  const f = [...document.querySelectorAll('.katex-display')].find(e => e.getBoundingClientRect().width > 0);
  if (!f) return 'no formula shown';
  const r = f.getBoundingClientRect();
  const content = Math.max(f.scrollWidth, f.querySelector('.katex').getBoundingClientRect().width);
  if (r.left >= -1 && content <= r.width + 1 && r.right <= vw + 1) return '';
  const ox = getComputedStyle(f).overflowX;
  if ((ox === 'auto' || ox === 'scroll') && r.left >= -1 && r.right <= vw + 1) return '';
  return `formula ${Math.round(content)} px wide in a ${Math.round(r.width)} px box (right edge ${Math.round(r.right)} ` +
         `of ${vw} px), overflow-x ${ox}`;
}"""


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_tables_and_formulas_fit_or_scroll(trained_app, page, width, height):
    manager, _ = trained_app
    if not (manager.output_dir / "class" / "alignment_comparison_report.json").is_file():
        manager.build_report()
        page.reload()
    _open_tab(page, "6 · Report", width, height)
    page.locator("#report-headline th").first.wait_for()
    assert page.locator("#report-headline th").count() >= 9
    assert page.evaluate(UNREACHABLE_HEADERS) == []
    assert page.evaluate(BROKEN_WORDS, "#report-headline th, #report-headline td") == []

    _open_tab(page, "1 · Learn", width, height)
    assert page.locator("#learn-compare td").count() >= 4 * 6
    assert page.evaluate(BROKEN_WORDS, "#learn-compare td, #learn-compare th") == []
    assert page.evaluate(FORMULA_HIDDEN) == ""


def test_learn_tab_shows_formula_code_lines_and_a_computed_number(trained_app, page):
    from alignment.lessons import LESSONS, worked_example

    _open_tab(page, "1 · Learn", 1280, 800)
    dpo = next(lesson for lesson in LESSONS if lesson.key == "dpo")
    assert page.locator("#learn-dpo-formula .katex").count() >= 1
    code = page.locator("#learn-dpo-code").inner_text()
    assert "losses = -F.logsigmoid(beta * h)" in code and "h = chosen_logratios - rejected_logratios" in code
    assert '"""' not in code and "Implicit reward (Rafailov" not in code and "Raises:" not in code
    loss = worked_example(dpo)["values"]["loss"]
    assert f"{loss:.3f}" in page.locator("#learn-dpo-worked").inner_text()
    learn_text = " ".join(page.locator("[id^='learn-']").all_inner_texts())
    assert "README" not in learn_text and "TRL 1.16" not in learn_text  # what students can't open; version notes
    assert page.locator("#learn-notebook").is_visible() and page.locator("#learn-to-compare").is_visible()
    page.locator("#learn-to-compare").click()
    page.locator("#cmp-prompt").wait_for(state="visible")
    # on a phone the Compare tab sits in Gradio's "More tabs" menu: the button still opens it
    _open_tab(page, "1 · Learn", 390, 844)
    page.locator("#learn-to-compare").click()
    page.locator("#cmp-prompt").wait_for(state="visible", timeout=10_000)
