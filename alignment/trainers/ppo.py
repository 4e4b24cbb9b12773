"""PPO-RLHF, our own implementation (TRL 1.x removed its PPOTrainer).

Follows Ouyang et al. 2022 (InstructGPT) and the details listed in Huang et al. 2022, "The N Implementation
Details of RLHF with PPO" (ICLR blog track), one step per rollout batch:

1. Rollout: sample one response per prompt with temperature T (top-k/top-p off; with ``bf16`` from a merged
   bf16 copy by the Gumbel-max trick, the same distribution); responses are cut after
   the first EOS; lengths come from the EOS position, masks from lengths (never from pad ids: SmolLM2's
   pad token equals EOS in its own config).
2. Score: the reward model's score at the last real token, normalised with a gain and bias fitted once on the
   base policy's answers (mean 0, std 1; Ziegler et al. 2019, Sec. 2.2; ``reward_norm_samples``, written to
   ``reward_normalization.json``); responses without EOS get ``missing_eos_penalty`` subtracted.
3. Reward per token: -beta * (log pi - log pi_ref) at every token, plus the score at the last response token
   (``alignment.losses.kl_penalty_rewards``). All log-probs use logits / T.
4. Advantages: GAE with gamma=1, lambda=0.95 (``alignment.losses.gae``), whitened over valid tokens.
5. Update: ``ppo_epochs`` passes over shuffled minibatches; clipped surrogate (epsilon 0.2) plus
   ``vf_coef`` x clipped value loss; gradient norm clipped at 1.0. The first minibatch's training forward also
   gives its old log-probs and values (the policy has not moved yet), saving part of the no-grad pass.
6. KL controller: fixed beta, or adaptive (Ziegler et al. 2019, Sec. 2.2).

Where it departs from the papers: the value model is a linear value head on the policy's own (LoRA-adapted)
trunk, as in TRL's former ``AutoModelForCausalLMWithValueHead``, instead of a separate network initialised
from the reward model (one copy of the weights on a CPU); the reference model is the policy with its adapter
disabled. Dropout is off everywhere.

Progress and stopping: before the first step "normalising rewards" (2); each step names its phases through
``ctx.phase``: "sampling" (1), "log-probs" (old, reference), "scoring" (2-4), "update" (5); after the loop "saving adapter" (then the caller,
``alignment.pipeline.train_run``, names "writing samples"). The stop flag is checked between
sampled tokens (``StopOnRequest``), at every phase boundary and after the step: a step interrupted before its
update is dropped whole (no metrics line, the policy as after the previous step), so a stopped run's adapter and
``metrics.jsonl`` always agree. The update itself (a few forward/backward passes) is not interrupted.

Over-optimisation (Gao et al. 2023): with a gold reward model, every rollout is also scored by it (``gold/scores``,
raw units; ``objective/raw_scores`` is the proxy's) and, on prompts that have a rule (the built-in data), by the
rules (``rules/scores``), and a ``FilmStrip`` records answers to fixed prompts before
the first step and every ``film_strip_every`` steps (``alignment.trainers.film_strip``).

Metrics use TRL's PPO names: ``objective/kl``, ``objective/entropy``, ``objective/non_score_reward``,
``objective/rlhf_reward``, ``objective/scores``, ``policy/approxkl_avg``, ``policy/clipfrac_avg``,
``loss/policy_avg``, ``loss/value_avg``, ``val/clipfrac_avg``, ``val/ratio``, ``val/num_eos_tokens``.
"""

from __future__ import annotations

import contextlib
import random
import time

import torch
from peft import get_peft_model
from transformers import StoppingCriteria, StoppingCriteriaList

from ..config import PPOConfig
from ..generation import MergedRolloutModel, RewardScorer, apply_missing_eos_penalty, generate, pack_responses
from ..losses import (gae, kl_penalty_rewards, masked_mean, masked_whiten, ppo_policy_loss, ppo_value_loss,
                      reward_normalization, sequence_logps_and_entropy)
from ..models import load_causal_lm, lora_config
from ..rules import rule_scores
from .common import RunContext, write_json


class ValueHead(torch.nn.Module):
    """Scalar value estimate per position from the last hidden state. Shapes: ``(B, L, H) -> (B, L)``."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden).squeeze(-1)


class AdaptiveKLController:
    """beta_{t+1} = beta_t * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon) (Ziegler et al. 2019, Sec. 2.2)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon


class FixedKLController:
    """Constant beta."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class StopOnRequest(StoppingCriteria):
    """Ends ``generate`` at the next decoded token once ``should_stop()`` is true (every row at once).

    Checked once per token: an ``Event`` check and one file ``stat`` (``RunContext.should_stop``), microseconds
    against the milliseconds a token costs.
    """

    def __init__(self, should_stop):
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.size(0),), bool(self.should_stop()), dtype=torch.bool, device=input_ids.device)


class StoppableSampler:
    """``model`` whose ``generate`` also stops at the next token when ``should_stop()`` (``StopOnRequest``); every
    other attribute is the model's own, so it drops into ``alignment.generation.generate``."""

    def __init__(self, model, should_stop):
        self._model, self._criteria = model, StoppingCriteriaList([StopOnRequest(should_stop)])

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, *args, **kwargs):
        return self._model.generate(*args, stopping_criteria=self._criteria, **kwargs)


def forward_policy(policy, value_head, input_ids, attention_mask, prompt_width: int, temperature: float,
                   response_logits_only: bool = True, entropy: bool = True):
    """Response log-probs (logits / T), values and entropies in one forward pass.

    Shapes: ``input_ids, attention_mask: (B, P + T)`` -> ``logprobs (B, T)``, ``values (B, T)`` (value of
    the state before each response token), ``entropy (B, T)`` (None when ``entropy=False``).
    """
    T = input_ids.size(1) - prompt_width
    out = policy(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                 logits_to_keep=T + 1 if response_logits_only else 0)
    logits = out.logits[:, -T - 1:-1]  # (B, T, V): position P-1+t predicts response token t
    hidden = out.hidden_states[-1][:, prompt_width - 1:-1]  # (B, T, H)
    logprobs, ent = sequence_logps_and_entropy(logits, input_ids[:, prompt_width:], temperature, entropy)
    return logprobs, value_head(hidden).float(), ent


@torch.no_grad()
def fit_reward_normalization(policy, tokenizer, prompts: list, scorer: RewardScorer, cfg: PPOConfig) -> dict:
    """Gain and bias of the reward model on the base policy (``alignment.losses.reward_normalization``): the base
    policy (adapter off) answers ``cfg.reward_norm_samples`` training prompts, drawn with their own seed (the
    training order is unchanged), at the training temperature and length budget; their raw scores, without the
    missing-EOS penalty, give mean 0 and std 1. Returns the normalisation with the prompts' count and source."""
    picks = random.Random(cfg.seed + 1).choices(range(len(prompts)), k=cfg.reward_norm_samples)
    batch = [prompts[i] for i in picks]
    with policy.disable_adapter() if hasattr(policy, "disable_adapter") else contextlib.nullcontext():
        gens = generate(policy, tokenizer, batch, max_new_tokens=cfg.max_completion_length,
                        temperature=cfg.temperature, do_sample=True, seed=cfg.seed + 1, batch_size=len(batch))
    raw = scorer.score(batch, [g.text for g in gens], bf16=cfg.bf16)
    return {**reward_normalization(raw), "source": "base policy answers to training prompts (Ziegler et al. 2019, "
            "Sec. 2.2): normalized score = gain * reward-model score + bias"}


def train_ppo(cfg: PPOConfig, source, tokenizer, train_rows, scorer: RewardScorer, ctx: RunContext, policy=None,
              gold_scorer: RewardScorer | None = None, film_strip=None):
    """Train a PPO LoRA adapter and value head; returns the trained ``PeftModel``.

    Saves ``adapter/`` (LoRA) and ``value_head.pt`` in ``ctx.run_dir``. Stops early (a valid run directory,
    ``ctx.stopped_early``) when ``ctx.should_stop()``; see the module docstring for where it is checked.
    ``gold_scorer``: the gold reward model, scoring every rollout for the ``gold/scores`` metric only (it never
    enters the reward); ``film_strip``: a ``FilmStrip`` taking frames before the first step and every
    ``cfg.film_strip_every`` steps (``alignment.trainers.film_strip``), or None.
    """
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    if policy is None:  # a fresh LoRA adapter on the base model
        ctx.phase("loading model")
        policy = get_peft_model(load_causal_lm(source, tokenizer), lora_config(cfg.lora_r, cfg.lora_alpha))
    if cfg.disable_dropout:
        for m in policy.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    device = policy.device
    value_head = ValueHead(policy.config.hidden_size).to(device)
    optimizer = torch.optim.AdamW([
        {"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.learning_rate},
        {"params": value_head.parameters(), "lr": cfg.learning_rate * cfg.value_lr_multiplier},
    ], eps=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / cfg.max_steps)  # linear decay
    kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.kl_controller == "adaptive"
              else FixedKLController(cfg.kl_coef))
    prompts = [r["prompt"] for r in train_rows]
    order: list[int] = []
    mb_size = cfg.batch_size // cfg.num_mini_batches
    amp = lambda: torch.autocast(policy.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)  # noqa: E731
    rollout = MergedRolloutModel(policy) if cfg.bf16 else None
    num_tokens = 0  # prompt + response tokens processed so far (TRL's "num_tokens")
    norm = None
    if cfg.reward_norm_samples:  # 0. the reward model's gain and bias on the base policy's answers
        ctx.phase("normalising rewards")
        norm = fit_reward_normalization(policy, tokenizer, prompts, scorer, cfg)
        write_json(ctx.run_dir / "reward_normalization.json", norm)
        ctx.should_stop()  # a stop meanwhile skips the steps below
    if film_strip is not None and not ctx.stopped_early and film_strip.wants(0):
        ctx.phase("film strip")
        film_strip.capture(0, policy, rollout)

    for step in range(1, cfg.max_steps + 1 if not ctx.stopped_early else 1):
        # 1. rollout -------------------------------------------------------------------------------------
        ctx.phase("sampling", step)
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(prompts)), len(prompts))
        batch_prompts = [prompts[order.pop()] for _ in range(cfg.batch_size)]
        t0 = time.perf_counter()
        if rollout is not None:  # sample from a bf16 merged copy; log-probs below come from the policy itself
            rollout.sync()
        sampler = StoppableSampler(rollout.model if rollout is not None else policy, ctx.should_stop)
        gens = generate(sampler, tokenizer, batch_prompts,
                        max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature, do_sample=True,
                        seed=None, batch_size=cfg.batch_size,
                        sampler="gumbel" if rollout is not None else "multinomial")  # same distribution
        input_ids, attn, mask, P = pack_responses(tokenizer, batch_prompts, [g.token_ids for g in gens], device=device)
        lengths = mask.sum(1).long()  # (B,)
        num_tokens += int(attn.sum())
        has_eos = torch.tensor([g.ended_with_eos for g in gens], device=device)
        if ctx.should_stop():  # this step's rollouts are dropped: the policy stays as after the last full step
            break
        ctx.phase("log-probs", step)
        t1 = time.perf_counter()
        # Old log-probs and values come from the policy before this step's update. The first minibatch of
        # the first epoch is forwarded with gradients right away and its outputs, detached, serve as its old
        # values (the policy has not moved yet, so the ratio is exactly 1 there, as in the paper); only the
        # other rows need a no-grad pass. Dropout must be off for the two to agree.
        perm = torch.randperm(cfg.batch_size, device=device)
        reuse = cfg.disable_dropout  # with dropout the training forward is not the policy's old output

        def fwd(rows, entropy=True):  # (logprobs, values, entropy), each (len(rows), T)
            return forward_policy(policy, value_head, input_ids[rows], attn[rows], P, cfg.temperature,
                                  cfg.response_logits_only, entropy)

        first_out = None
        if reuse:
            with amp():
                first_out = fwd(perm[:mb_size])  # with grad: reused by the first update below
        old_logprobs, old_values, entropy = (torch.empty(mask.shape, device=device) for _ in range(3))  # (B, T)
        with torch.no_grad(), amp():
            rest = perm[mb_size:] if reuse else perm
            parts = ([(perm[:mb_size], first_out)] if reuse else []) + ([(rest, fwd(rest))] if len(rest) else [])
            for rows, out in parts:
                old_logprobs[rows], old_values[rows], entropy[rows] = (x.detach().float() for x in out)
            with policy.disable_adapter():
                ref_logprobs = fwd(slice(None), entropy=False)[0]
        if ctx.should_stop():
            break
        ctx.phase("scoring", step)
        t2 = time.perf_counter()
        with torch.no_grad():  # 2. score (bf16 autocast when cfg.bf16) -----------------------------------------
            texts = [g.text for g in gens]
            raw_scores = scorer.score(batch_prompts, texts, bf16=cfg.bf16).to(device)  # (B,) fp32
            scores = raw_scores * norm["gain"] + norm["bias"] if norm else raw_scores
            scores = apply_missing_eos_penalty(scores, has_eos, cfg.missing_eos_penalty)
            gold_scores = (gold_scorer.score(batch_prompts, texts, bf16=cfg.bf16)
                           if gold_scorer is not None else None)  # (B,) watched, never optimised
            rules = rule_scores(batch_prompts, texts)  # the built-in prompts' rules, watched
            # 3. per-token rewards with KL penalty, 4. GAE ---------------------------------------------------
            rewards, non_score = kl_penalty_rewards(old_logprobs, ref_logprobs, scores, lengths, kl_ctl.value)
            advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, mask)
        # 5. PPO epochs over shuffled minibatches ----------------------------------------------------------
        if ctx.should_stop():
            break
        ctx.phase("update", step)
        t3 = time.perf_counter()
        policy.train()
        stats: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "pg_clip", "vf_clip", "approxkl", "ratio", "ent")}
        for epoch in range(cfg.ppo_epochs):
            if epoch > 0:
                perm = torch.randperm(cfg.batch_size, device=device)
            for start in range(0, cfg.batch_size, mb_size):
                idx = perm[start:start + mb_size]
                if epoch == 0 and start == 0 and first_out is not None:
                    logprobs, values, ent = first_out
                else:
                    with amp():
                        logprobs, values, ent = fwd(idx)
                pg_loss, pg_stats = ppo_policy_loss(logprobs, old_logprobs[idx], advantages[idx], mask[idx], cfg.cliprange)
                vf_loss, vf_stats = ppo_value_loss(values, old_values[idx], returns[idx], mask[idx], cfg.cliprange_value)
                loss = pg_loss + cfg.vf_coef * vf_loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
                optimizer.step()
                for k, v in (("pg", pg_loss), ("vf", vf_loss), ("pg_clip", pg_stats["clipfrac"]),
                             ("vf_clip", vf_stats["clipfrac"]), ("approxkl", pg_stats["approxkl"]),
                             ("ratio", pg_stats["ratio"]), ("ent", masked_mean(ent, mask[idx]))):
                    stats[k].append(float(v.detach()))
        first_out = None
        policy.eval()
        scheduler.step()
        t4 = time.perf_counter()
        # 6. KL controller and metrics ---------------------------------------------------------------------
        kl = ((old_logprobs - ref_logprobs) * mask).sum(1)  # (B,) per-sequence KL estimate
        non_score_sum = non_score.sum(1)
        kl_coef_used = kl_ctl.value
        kl_ctl.update(float(kl.mean()), cfg.batch_size)
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        if step % cfg.logging_steps == 0 or step == cfg.max_steps:
            ctx.log(step, {
                "objective/kl": kl.mean(), "objective/entropy": (entropy * mask).sum(1).mean(),
                "objective/non_score_reward": non_score_sum.mean(), "objective/rlhf_reward": (scores + non_score_sum).mean(),
                "objective/scores": scores.mean(), "objective/raw_scores": raw_scores.mean(),
                "objective/kl_coef": kl_coef_used,
                "policy/approxkl_avg": mean(stats["approxkl"]), "policy/clipfrac_avg": mean(stats["pg_clip"]),
                "policy/entropy_avg": mean(stats["ent"]), "loss/policy_avg": mean(stats["pg"]),
                "loss/value_avg": mean(stats["vf"]), "val/clipfrac_avg": mean(stats["vf_clip"]),
                "val/ratio": mean(stats["ratio"]), "val/num_eos_tokens": has_eos.sum(),
                "completions/mean_length": lengths.float().mean(), "learning_rate": scheduler.get_last_lr()[0],
                "time/generation_s": t1 - t0, "time/logprobs_s": t2 - t1, "time/scoring_s": t3 - t2,
                "time/update_s": t4 - t3, "num_tokens": num_tokens,
                **({"gold/scores": gold_scores.mean()} if gold_scores is not None else {}),
                **({"rules/scores": sum(rules) / len(rules)} if rules else {}),
            })
        if ctx.should_stop():
            break
        if film_strip is not None and film_strip.wants(step, final=step == cfg.max_steps):
            ctx.phase("film strip")
            film_strip.capture(step, policy, rollout)
    first_out = None  # a step stopped after its first forward leaves a graph here
    policy.eval()
    ctx.phase("saving adapter")
    policy.save_pretrained(ctx.run_dir / "adapter")
    torch.save(value_head.state_dict(), ctx.run_dir / "value_head.pt")
    return policy
