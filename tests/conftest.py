"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer (from the embedded GGUF).

The hub is never contacted: HF_HUB_OFFLINE is forced before anything imports huggingface_hub.
"""

import os
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# no paid judge from a developer's .env: the environment wins over .env, and an empty key means no judge (a test
# that wants one configures it, against a local fake server)
os.environ["JUDGE_API_KEY"] = os.environ["OPENAI_API_KEY"] = ""

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from alignment.data import load_preference_dataset  # noqa: E402
from alignment.models import load_tokenizer, resolve_model  # noqa: E402

HH_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base-test-1800.jsonl.gz"


@pytest.fixture(scope="session")
def tiny_source():
    return resolve_model("tiny")


@pytest.fixture(scope="session")
def tokenizer(tiny_source):
    return load_tokenizer(tiny_source)


@pytest.fixture()
def tok(tokenizer):
    """The session tokenizer with its padding side restored after each test."""
    side = tokenizer.padding_side
    yield tokenizer
    tokenizer.padding_side = side


@pytest.fixture(scope="session")
def builtin_rows():
    rows, _ = load_preference_dataset("builtin")
    return rows


@pytest.fixture(scope="session")
def hh_path():
    if not HH_PATH.is_file():
        pytest.skip(f"{HH_PATH} not present")
    return HH_PATH


def launch_app(output_dir, launch_kwargs=None, **manager_kwargs):
    """The full Gradio app on the tiny model, served in this process on a free port; returns (manager, demo, url).

    ``launch_kwargs``: extra ``launch()`` arguments, e.g. ``ui.login_guard.guarded_launch_kwargs(auth)``."""
    from class7_1 import AlignmentComparisonManager
    from ui import LAUNCH_KWARGS, create_app

    manager = AlignmentComparisonManager("tiny", output_dir=output_dir, preset="quick", **manager_kwargs)
    demo = create_app(manager)
    demo.queue(default_concurrency_limit=1).launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1",
                                                   **{**LAUNCH_KWARGS, **(launch_kwargs or {})})
    return manager, demo, demo.local_url


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    """(manager, url); the Data tab may read the project's data/, the output folder and ``manager.data_dirs[-1]``
    (a tmp data folder for the tests' files)."""
    from alignment.data import DATA_DIR

    out = tmp_path_factory.mktemp("app")
    manager, demo, url = launch_app(out, data_dirs=[DATA_DIR, tmp_path_factory.mktemp("data")])
    yield manager, url
    demo.close()


# ---------------------------------------------------------------------------------------- browser tests
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                    reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="session")
def browser():
    """Debian's headless chromium driven by Playwright (never a downloaded browser), shared by the browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, url: str, width: int, height: int, **kwargs):
    """A new page of the app at ``width`` x ``height``, loaded (the first tab is there)."""
    page = browser.new_page(viewport={"width": width, "height": height}, **kwargs)
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("tab", name="1 · Learn").wait_for()
    return page


def open_tab(page, name: str) -> None:
    """Click a tab; on a phone the later tabs sit in Gradio's "More tabs" menu."""
    tab = page.get_by_role("tab", name=name)
    if tab.count() and tab.is_visible():
        tab.click()
    else:
        page.get_by_label("More tabs").click()
        page.locator("button:visible", has_text=name).last.click()
