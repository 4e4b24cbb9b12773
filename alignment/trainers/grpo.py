"""GRPO with TRL ``GRPOTrainer``, rewarded by the trained reward model.

For each prompt, G = ``num_generations`` responses are sampled; their reward-model scores are normalised
within the group (``alignment.losses.grpo_advantages``; Shao et al. 2024, Sec. 4.1.2) and the clipped
objective with a k3 KL penalty to the reference (the policy with its adapter disabled) is minimised
(``alignment.losses.grpo_loss`` with ``kl_importance_weight=True``, TRL 1.16's default; equal to TRL's loss
within 1e-5, tests/test_trl_equivalence.py). No value model. The reward is the same as PPO's: reward-model score minus
``missing_eos_penalty`` for completions that hit the length limit without EOS.
Metrics: TRL's ``reward``, ``reward_std``, ``kl``, ``entropy``, ``completions/mean_length``, ``clip_ratio/*``; and,
as PPO logs them, ``objective/raw_scores`` (the proxy reward model's mean score, no penalty) and ``gold/scores``
(the gold reward model's, when there is one) and ``rules/scores`` (the rules' mean on prompts that have one: the
built-in data), for the over-optimisation charts (``alignment.trainers.film_strip``).

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

from transformers import TrainerCallback

from ..config import GRPOConfig
from ..generation import MergedRolloutModel, RewardScorer, apply_missing_eos_penalty
from ..models import load_causal_lm, lora_config
from ..rules import rule_scores
from .common import RunContext, attach, lm_head_on_labelled_positions_only, trained_model, trl_common_args
from .film_strip import film_strip_callback


class _WatchScores(TrainerCallback):
    """Adds the mean proxy, gold and rules scores of the rollouts since the last log line to TRL's logs (``on_log``
    runs before ``RunContextCallback``'s, which writes them: callbacks run in the order they were added)."""

    def __init__(self):
        self.pending: dict[str, list[float]] = {"objective/raw_scores": [], "gold/scores": [], "rules/scores": []}

    def add(self, key: str, scores: list[float]) -> None:
        self.pending[key].extend(scores)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            for key, values in self.pending.items():
                if values:
                    logs[key] = sum(values) / len(values)
                    values.clear()


def train_grpo(cfg: GRPOConfig, source, tokenizer, train_rows, scorer: RewardScorer, ctx: RunContext, policy=None,
               gold_scorer: RewardScorer | None = None, film_strip=None):
    """Train a GRPO LoRA adapter; returns the trained ``PeftModel`` (saved in ``ctx.run_dir / "adapter"``).

    ``gold_scorer``: the gold reward model, scoring every rollout for the ``gold/scores`` metric only (it never
    enters the reward); ``film_strip``: a ``FilmStrip`` taking frames during training, or None."""
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
    watch = _WatchScores()

    def reward_model(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        """The reward-model score minus the missing-EOS penalty (as PPO's: ``apply_missing_eos_penalty``), named
        "scoring" while it runs and "update" after (TRL's metrics keep the name ``rewards/reward_model/*``: it is
        this function's ``__name__``). The raw, gold and rules scores are kept for ``watch``."""
        ctx.phase("scoring", trainer.state.global_step + 1)
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        raw = scorer.score(prompts, texts, bf16=cfg.bf16)  # (B,)
        watch.add("objective/raw_scores", raw.tolist())
        if gold_scorer is not None:
            watch.add("gold/scores", gold_scorer.score(prompts, texts, bf16=cfg.bf16).tolist())
        watch.add("rules/scores", rule_scores(prompts, texts))
        if completion_ids is not None:
            has_eos = torch.tensor([bool(ids) and ids[-1] == tokenizer.eos_token_id for ids in completion_ids])
            raw = apply_missing_eos_penalty(raw, has_eos, cfg.missing_eos_penalty)
        ctx.phase("update", trainer.state.global_step + 1)
        return raw.tolist()

    trainer = trl.GRPOTrainer(model=policy, reward_funcs=reward_model, args=args, train_dataset=prompts,
                              processing_class=copy.deepcopy(tokenizer))  # the app's shared tokenizer stays as it is
    # TRL samples through policy.generate: with bf16 a merged copy with Gumbel-max draws (same distribution;
    # log-probs still come from the policy)
    rollout = MergedRolloutModel(policy) if cfg.bf16 else None
    sample = rollout.generate if rollout is not None else policy.generate

    def generate(*args, **kwargs):
        out = sample(*args, **kwargs)
        ctx.phase("log-probs", trainer.state.global_step + 1)
        return out

    policy.generate = generate
    trainer.add_callback(watch)
    if film_strip is not None and film_strip.enabled:
        trainer.add_callback(film_strip_callback(film_strip, trainer, ctx, rollout))
    try:
        with lm_head_on_labelled_positions_only(cfg.response_logits_only):
            attach(trainer, ctx, step_phase="sampling").train()
    finally:
        policy.__dict__.pop("generate", None)
    model = trained_model(trainer)
    ctx.phase("saving adapter")
    model.save_pretrained(ctx.run_dir / "adapter")
    return model
