"""GRPO with TRL ``GRPOTrainer``, rewarded by the trained reward model.

For each prompt, G = ``num_generations`` responses are sampled; their reward-model scores are normalised
within the group (``alignment.losses.grpo_advantages``; Shao et al. 2024, Sec. 4.1.2) and the clipped
objective with a k3 KL penalty to the reference (the policy with its adapter disabled) is minimised
(``alignment.losses.grpo_loss`` with ``kl_importance_weight=True``, TRL 1.16's default; equal to TRL's loss
within 1e-5, tests/test_trl_equivalence.py). No value model. The reward is the same as PPO's: reward-model score minus
``missing_eos_penalty`` for completions that hit the length limit without EOS.
Metrics: TRL's ``reward``, ``reward_std``, ``kl``, ``entropy``, ``completions/mean_length``, ``clip_ratio/*``.

Progress: the phases of each step are named through ``ctx.phase`` from TRL's own order of work
(``GRPOTrainer._generate_and_score_completions``): "sampling" when the step begins (``RunContextCallback``),
"log-probs" when ``generate`` returns (old and reference log-probs), "scoring" when TRL calls the reward
function, "update" when it returns (advantages, loss, backward, optimizer step); then "saving adapter" (the
caller names "writing samples"). The stop flag is checked after each step (TRL's loop offers no
clean exit inside one).
"""

from __future__ import annotations

import copy
import torch
from datasets import Dataset
from peft import get_peft_model

from ..config import GRPOConfig
from ..generation import MergedRolloutModel, PenalizedReward, RewardScorer
from ..models import load_causal_lm, lora_config
from .common import RunContext, attach, lm_head_on_labelled_positions_only, trained_model, trl_common_args


def train_grpo(cfg: GRPOConfig, source, tokenizer, train_rows, scorer: RewardScorer, ctx: RunContext, policy=None):
    """Train a GRPO LoRA adapter; returns the trained ``PeftModel`` (saved in ``ctx.run_dir / "adapter"``)."""
    import trl

    torch.manual_seed(cfg.seed)
    if policy is None:  # a fresh LoRA adapter on the base model
        ctx.phase("loading model")
        policy = get_peft_model(load_causal_lm(source, tokenizer), lora_config(cfg.lora_r, cfg.lora_alpha))
    args = trl.GRPOConfig(
        **trl_common_args(cfg, ctx.run_dir, use_cpu=not torch.cuda.is_available()),
        per_device_train_batch_size=cfg.batch_size * cfg.num_generations,  # completions per step
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_k=0,
        top_p=1.0,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        loss_type=cfg.loss_type,
        scale_rewards="group" if cfg.scale_rewards else "none",
        disable_dropout=cfg.disable_dropout,
    )
    ctx.phase("preparing data")
    prompts = Dataset.from_list([{"prompt": r["prompt"]} for r in train_rows])
    penalized = PenalizedReward(scorer, tokenizer.eos_token_id, cfg.missing_eos_penalty, bf16=cfg.bf16)

    def reward_model(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        """``penalized``, named "scoring" while it runs and "update" after (TRL's metrics keep the name
        ``rewards/reward_model/*``: it is this function's ``__name__``)."""
        ctx.phase("scoring", trainer.state.global_step + 1)
        scores = penalized(prompts, completions, completion_ids=completion_ids, **kwargs)
        ctx.phase("update", trainer.state.global_step + 1)
        return scores

    trainer = trl.GRPOTrainer(model=policy, reward_funcs=reward_model, args=args, train_dataset=prompts,
                              processing_class=copy.deepcopy(tokenizer))  # the app's shared tokenizer stays as it is
    # TRL samples through policy.generate: with bf16 a merged copy with Gumbel-max draws (same distribution;
    # log-probs still come from the policy)
    sample = MergedRolloutModel(policy).generate if cfg.bf16 else policy.generate

    def generate(*args, **kwargs):
        out = sample(*args, **kwargs)
        ctx.phase("log-probs", trainer.state.global_step + 1)
        return out

    policy.generate = generate
    try:
        with lm_head_on_labelled_positions_only(cfg.response_logits_only):
            attach(trainer, ctx, step_phase="sampling").train()
    finally:
        policy.__dict__.pop("generate", None)
    model = trained_model(trainer)
    ctx.phase("saving adapter")
    model.save_pretrained(ctx.run_dir / "adapter")
    return model
