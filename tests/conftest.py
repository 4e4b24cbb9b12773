"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer (from the embedded GGUF).

The hub is never contacted: HF_HUB_OFFLINE is forced before anything imports huggingface_hub.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
