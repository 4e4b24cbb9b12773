"""Issue 11, identity without ``--auth``: a student types their name once, it is kept in their browser
(``gr.BrowserState``) and fills every name box again after a reload, and what they submit then carries it.

The browser part runs headless Debian chromium (Playwright) against the served app (no logins); each page is a
browser context of its own, so its localStorage starts empty. Under ``--auth`` the login wins over a stored name
(``restore_names``, below without a browser; ``tests/test_browser_class.py`` sees the login in the page).
"""

import json
from types import SimpleNamespace

import pytest

from conftest import needs_chromium, open_page, open_tab

NAME = "reload-student"


def _value_is(page, selector: str, value: str) -> None:
    page.wait_for_function("(a) => document.querySelector(a[0])?.value === a[1]", arg=[selector, value])


@needs_chromium
def test_typed_name_survives_a_reload(served_app, browser):
    manager, url = served_app
    page = open_page(browser, url, 1280, 1000)
    try:
        open_tab(page, "3 · Annotate")
        page.get_by_label("Your name (annotator)").fill(NAME)
        # typed once: the other name boxes have it too, before any reload
        open_tab(page, "4 · Train")
        _value_is(page, "#train-name textarea", NAME)

        page.reload()
        page.get_by_role("tab", name="1 · Learn").wait_for()
        open_tab(page, "3 · Annotate")
        annotator = page.get_by_label("Your name (annotator)")
        page.wait_for_function("(a) => a[0].value === a[1]", arg=[annotator.element_handle(), NAME])
        assert annotator.is_editable()  # without --auth the name stays the student's to change
        open_tab(page, "4 · Train")
        _value_is(page, "#train-name textarea", NAME)
        open_tab(page, "5 · Compare")
        voter = page.get_by_label("Your name (optional)")
        page.wait_for_function("(a) => a[0].value === a[1]", arg=[voter.element_handle(), NAME])
        assert page.get_by_text("Not verified: anyone can type any name").count() >= 1  # the page says so

        # an answer given after the reload is the restored name's
        open_tab(page, "3 · Annotate")
        page.get_by_role("button", name="Load next item (n)").click()
        resp_a = page.get_by_label("Response A")
        page.wait_for_function("(el) => el.value.length > 0", arg=resp_a.element_handle())
        page.get_by_role("button", name="A is better (1)").click()
        page.locator("#ann-status").get_by_text("Saved (pairwise: A)").wait_for()
        records = json.loads(manager.annotations.flush().read_text())["annotations"]
        assert [r["choice"] for r in records if r["annotator"] == NAME] == ["A"]
    finally:
        page.close()


def test_login_wins_over_the_stored_name():
    """Under --auth every name box shows the login, read-only, whatever the browser kept; without it, the kept
    name (trimmed, at most 64 characters; junk gives nothing)."""
    from ui.common import restore_names

    restore = restore_names(3)
    out = restore({"name": "mallory"}, SimpleNamespace(username="ana"))
    assert [(u["value"], u["interactive"]) for u in out] == [("ana", False)] * 3
    assert len({id(u) for u in out}) == 3  # one dict per box: Gradio pops "value" from each as it applies it
    out = restore({"name": "  ben  "}, SimpleNamespace(username=None))
    assert [u.get("value") for u in out] == ["ben"] * 3 and all("interactive" not in u for u in out)
    assert restore({"name": "x" * 100}, None)[0]["value"] == "x" * 64
    for junk in (None, "", {"name": 3}, ["ben"], {"name": "   "}):
        assert all("value" not in u for u in restore(junk, None))


@pytest.mark.parametrize("saved, name", [({"name": "ana"}, "ana"), ("ana", "ana"), ({}, "")])
def test_saved_name(saved, name):
    from ui.common import saved_name

    assert saved_name(saved) == name


def test_the_standalone_apps_remember_the_name_too(tmp_path):
    """The course's standalone annotation and comparison apps keep the typed name in the browser as the full app
    does: a ``gr.BrowserState`` on the page and a load event that fills the name box from it."""
    import gradio as gr

    from class7_1 import AlignmentComparisonManager
    from ui.common import NAME_STORAGE_KEY

    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path, preset="quick")
    for demo in (manager.create_annotation_platform(), manager.create_comparison_demo()):
        stores = [b for b in demo.blocks.values() if isinstance(b, gr.BrowserState)]
        assert [s.storage_key for s in stores] == [NAME_STORAGE_KEY]
        loads = [d for d in demo.config["dependencies"] if any(t[1] == "load" for t in d["targets"])]
        assert any(stores[0]._id in d["inputs"] for d in loads)
