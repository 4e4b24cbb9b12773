"""DPO with TRL ``DPOTrainer``. The reference model is the policy with its LoRA adapter disabled (TRL does
this when given a ``PeftModel`` and no ``ref_model``), so there is one copy of the weights.

Loss: ``alignment.losses.dpo_loss`` (Rafailov et al. 2023, Eq. 7; IPO: Azar et al. 2023, Eq. 17).
Metrics: TRL's ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``, ``rewards/margins``,
``logps/chosen``, ``logps/rejected``. A ``FilmStrip`` (``alignment.trainers.film_strip``) records the policy's
answers to fixed prompts before the first step and every ``film_strip_every`` steps.
"""

from __future__ import annotations

import copy
import torch
from peft import get_peft_model

from ..config import DPOConfig
from ..data import to_trl_preference
from ..models import load_causal_lm, lora_config
from .common import RunContext, attach, lm_head_on_labelled_positions_only, trained_model, trl_common_args
from .film_strip import film_strip_callback


def train_dpo(cfg: DPOConfig, source, tokenizer, train_rows, ctx: RunContext, policy=None, film_strip=None):
    """Train a DPO LoRA adapter; returns the trained ``PeftModel`` (saved in ``ctx.run_dir / "adapter"``).

    ``film_strip``: a ``FilmStrip`` taking frames during training, or None."""
    import trl

    torch.manual_seed(cfg.seed)
    if policy is None:  # a fresh LoRA adapter on the base model
        ctx.phase("loading model")
        policy = get_peft_model(load_causal_lm(source, tokenizer), lora_config(cfg.lora_r, cfg.lora_alpha))
    args = trl.DPOConfig(
        **trl_common_args(cfg, ctx.run_dir, use_cpu=not torch.cuda.is_available()),
        per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_prompt_length + cfg.max_completion_length + 8,
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        disable_dropout=cfg.disable_dropout,
    )
    tokenizer = copy.deepcopy(tokenizer)  # TRL pads on the right; the app's shared tokenizer stays as it is
    tokenizer.padding_side = "right"
    ctx.phase("preparing data")  # TRL tokenizes the pairs when the trainer is built
    trainer = trl.DPOTrainer(model=policy, args=args, train_dataset=to_trl_preference(train_rows),
                             processing_class=tokenizer)
    if film_strip is not None and film_strip.enabled:
        trainer.add_callback(film_strip_callback(film_strip, trainer, ctx))
    with lm_head_on_labelled_positions_only(cfg.response_logits_only):
        attach(trainer, ctx).train()
    model = trained_model(trainer)
    ctx.phase("saving adapter")
    model.save_pretrained(ctx.run_dir / "adapter")
    return model
