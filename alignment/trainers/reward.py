"""Reward model: Bradley-Terry on preference pairs with TRL ``RewardTrainer`` (LoRA + full scalar head).

Loss: ``alignment.losses.bradley_terry_loss`` (Ouyang et al. 2022, Eq. 1), plus TRL's optional centring term.
After training, the held-out pairs are scored: accuracy, mean margin, and the pairs it got wrong are kept
for error analysis.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from peft import get_peft_model

from ..config import RewardModelConfig
from ..data import to_trl_preference
from ..generation import RewardScorer
from ..models import load_sequence_classifier, lora_config
from .common import RunContext, attach, trained_model, trl_common_args


def evaluate_reward_model(scorer: RewardScorer, rows: list[dict]) -> dict:
    """Held-out accuracy (fraction with r(chosen) > r(rejected)), mean margin and the misranked pairs."""
    if not rows:
        return {"accuracy": None, "mean_margin": None, "n_pairs": 0, "errors": []}
    prompts = [r["prompt"] for r in rows]
    chosen = scorer.score(prompts, [r["chosen"] for r in rows])
    rejected = scorer.score(prompts, [r["rejected"] for r in rows])
    margins = chosen - rejected
    errors = [{"prompt": r["prompt"][-1]["content"], "chosen": r["chosen"], "rejected": r["rejected"],
               "category": r["category"], "score_chosen": float(c), "score_rejected": float(j)}
              for r, c, j, m in zip(rows, chosen, rejected, margins) if m <= 0]
    by_cat: dict[str, list[float]] = {}
    for r, m in zip(rows, margins.tolist()):
        by_cat.setdefault(r["category"], []).append(float(m > 0))
    return {"accuracy": float((margins > 0).float().mean()), "mean_margin": float(margins.mean()),
            "n_pairs": len(rows), "accuracy_by_category": {k: sum(v) / len(v) for k, v in sorted(by_cat.items())},
            "errors": errors}


def train_reward_model(cfg: RewardModelConfig, source, tokenizer, train_rows, eval_rows, ctx: RunContext, model=None):
    """Train the reward model; returns ``(scorer, result)``.

    ``model``: an already built LoRA sequence classifier (``PeftModel``); default: the base model with a fresh
    scalar head and LoRA from ``cfg``.

    ``result`` holds ``heldout`` (``evaluate_reward_model``), ``adapter`` path and trainer metrics; the adapter
    is saved in ``ctx.run_dir / "adapter"``.
    """
    from trl import RewardConfig, RewardTrainer

    if model is None:
        ctx.phase("loading model")
        model = get_peft_model(load_sequence_classifier(source, tokenizer, seed=cfg.seed),
                               lora_config(cfg.lora_r, cfg.lora_alpha, task_type="SEQ_CLS"))
    args = RewardConfig(
        **trl_common_args(cfg, ctx.run_dir, use_cpu=not torch.cuda.is_available()),
        per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_prompt_length + cfg.max_completion_length + 16,
        center_rewards_coefficient=cfg.center_rewards_coefficient,
        disable_dropout=cfg.disable_dropout,
    )
    shared_tokenizer, tokenizer = tokenizer, copy.deepcopy(tokenizer)  # TRL pads on the right; the shared one stays
    tokenizer.padding_side = "right"
    ctx.phase("preparing data")  # TRL tokenizes the pairs when the trainer is built
    trainer = RewardTrainer(model=model, args=args, train_dataset=to_trl_preference(train_rows),
                            processing_class=tokenizer)
    attach(trainer, ctx).train()
    model = trained_model(trainer)
    ctx.phase("saving adapter")
    model.save_pretrained(ctx.run_dir / "adapter")
    scorer = RewardScorer(model, shared_tokenizer, max_length=args.max_length)
    ctx.phase("held-out scoring")
    return scorer, {"heldout": evaluate_reward_model(scorer, eval_rows), "adapter": str(Path(ctx.run_dir) / "adapter")}
