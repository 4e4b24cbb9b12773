"""Reference implementations of the alignment objectives, as pure functions on tensors.

These are the formulas the project teaches. The reward model, DPO and GRPO are trained by TRL's trainers
(whose losses these match, see tests/test_losses.py); PPO is trained by ``alignment.trainers.ppo`` which
calls the functions below directly.

Conventions: ``B`` batch size, ``T`` response length in tokens, ``G`` group size. Log-probabilities are in
nats. ``mask`` is 1.0 for real response tokens and 0.0 for padding (built from lengths, never from pad ids).
Every loss returns per-example or scalar values as documented; "lower is better" throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- helpers


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is 1. Shapes: ``values, mask: (B, T)``."""
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise ``values`` to zero mean, unit variance over valid tokens (Huang et al. 2022, detail 'advantage
    whitening'). Padding positions are returned as 0. Shapes: ``(B, T) -> (B, T)``."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-token log pi(label | prefix) from logits, with logits divided by the sampling temperature.

    Args:
        logits: ``(B, T, V)`` logits that predict ``labels`` (already shifted: ``logits[:, t]`` predicts
            ``labels[:, t]``).
        labels: ``(B, T)`` token ids.
        temperature: the sampling temperature; using the same T for sampling and scoring keeps the
            ratio pi/pi_old exact (Huang et al. 2022, detail 'scale the logits by sampling temperature').

    Returns:
        ``(B, T)`` log-probabilities in nats.
    """
    return sequence_logps_and_entropy(logits, labels, temperature, entropy=False)[0]


def sequence_logps_and_entropy(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
                               entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``sequence_logps`` and, from the same log-softmax, the per-token entropy of softmax(logits / T).

    Shapes: ``logits (B, T, V)``, ``labels (B, T)`` -> ``(logps (B, T), entropy (B, T) or None)``, in nats.
    The log-softmax runs in fp32; the entropy carries no gradient (it is a metric).
    """
    logp = (logits.float() / temperature).log_softmax(-1)  # (B, T, V)
    logps = torch.gather(logp, 2, labels.unsqueeze(-1)).squeeze(-1)
    if not entropy:
        return logps, None
    logp = logp.detach()
    return logps, -(logp.exp() * logp).sum(-1)


# ----------------------------------------------------------------------------- reward model


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise reward-model loss  L = -log sigma(r(x, y_w) - r(x, y_l) [- m]).

    Source: Bradley & Terry (1952); as a reward-model loss Ouyang et al. 2022 ("InstructGPT"), Eq. 1; the
    optional margin m is Llama 2 (Touvron et al. 2023), Eq. 2. This is what TRL's ``RewardTrainer`` minimises.

    Shapes: ``chosen_rewards, rejected_rewards, margin: (B,)`` scalar rewards (arbitrary units) -> ``(B,)``
    per-pair losses in nats. Mean them for the batch loss.
    """
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff)


# ----------------------------------------------------------------------------- DPO / IPO


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct Preference Optimization loss and its implicit rewards.

    Implicit reward (Rafailov et al. 2023, Eq. 5): r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)).
    With h = [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)]:

    - ``"sigmoid"`` (DPO, Rafailov et al. 2023, Eq. 7):  L = -log sigma(beta * h)
    - ``"ipo"`` (IPO, Azar et al. 2023, Eq. 17):          L = (h - 1 / (2 beta))^2, where beta plays the role of
      tau. TRL feeds IPO with length-averaged log-probs (``logps / n_tokens``); pass those to match it.

    Shapes: all four inputs ``(B,)`` summed sequence log-probs in nats. Returns ``(losses, chosen_rewards,
    rejected_rewards)``, each ``(B,)``; ``rewards/margins`` is ``chosen_rewards - rejected_rewards`` and
    ``rewards/accuracies`` the fraction where it is > 0.

    Raises:
        ValueError: unknown ``loss_type``.
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"Unknown DPO loss_type {loss_type!r} (expected 'sigmoid' or 'ipo')")
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


# ----------------------------------------------------------------------------- PPO


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, Eqs. 11-16).

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t);  A_t = sum_l (gamma * lam)^l delta_{t+l};  R_t = A_t + V(s_t).
    The value after the last valid token is 0 (the episode ends at EOS or at the length limit).

    Shapes: ``rewards, values, mask: (B, T)`` per-token rewards, value estimates and validity mask ->
    ``(advantages, returns)``, both ``(B, T)``, zero at padding.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    values, rewards = values * mask, rewards * mask
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < T else 0.0)
        advantages[:, t] = last * mask[:, t]
    return advantages, (advantages + values) * mask


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float = 0.2) -> tuple[torch.Tensor, dict]:
    """PPO clipped surrogate objective (Schulman et al. 2017, Eq. 7), as a loss to minimise.

    ratio_t = exp(log pi(a_t) - log pi_old(a_t));
    L = mean_t max(-A_t * ratio_t, -A_t * clip(ratio_t, 1 - eps, 1 + eps)) over valid tokens.

    Shapes: ``logprobs, old_logprobs, advantages, mask: (B, T)`` -> scalar loss, plus stats
    ``clipfrac`` (fraction of tokens where the clipped term was used) and ``approxkl``
    (0.5 * mean (log ratio)^2, the estimator used by TRL's PPO).
    """
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask),
                 "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
                 "ratio": masked_mean(ratio, mask)}
    return loss, stats


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip_range_value: float = 0.2) -> tuple[torch.Tensor, dict]:
    """Clipped value loss (Huang et al. 2022, "The N Implementation Details of RLHF with PPO", detail 'value
    function loss clipping'; from OpenAI baselines' ppo2).

    V_clip = old_V + clip(V - old_V, -eps_v, eps_v);  L = 0.5 * mean_t max((V - R)^2, (V_clip - R)^2).

    Shapes: ``values, old_values, returns, mask: (B, T)`` -> scalar loss and ``clipfrac`` stat.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(loss_unclipped, loss_clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((loss_clipped > loss_unclipped).float(), mask)}
    return loss, stats


# ----------------------------------------------------------------------------- GRPO


def grpo_advantages(rewards: torch.Tensor, group_size: int, scale_rewards: bool = True,
                    eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages (Shao et al. 2024, DeepSeekMath, Sec. 4.1.2, outcome supervision).

    A_i = (r_i - mean(r_group)) / (std(r_group) + eps), the same for every token of response i.
    With ``scale_rewards=False`` the std division is dropped (Dr. GRPO, Liu et al. 2025, Sec. 3.1).
    std is the unbiased sample std, eps = 1e-4, as in TRL.

    Shapes: ``rewards: (B,)`` with ``B = n_prompts * group_size`` and the G responses of a prompt adjacent ->
    ``(B,)``.

    Raises:
        ValueError: ``B`` is not a multiple of ``group_size``.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)  # (n_prompts, G)
    adv = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_rewards:
        adv = adv / (grouped.std(dim=1, keepdim=True) + eps)
    return adv.view(-1)


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
              advantages: torch.Tensor, mask: torch.Tensor, beta: float = 0.04, epsilon: float = 0.2,
              loss_type: str = "grpo", max_completion_length: int | None = None,
              kl_importance_weight: bool = False) -> torch.Tensor:
    """GRPO objective as a loss (Shao et al. 2024, Eq. 3; KL estimator Eq. 4).

    Per token: l_t = -min(ratio_t * A, clip(ratio_t, 1 - eps, 1 + eps) * A) + beta * KL_t, with
    ratio_t = exp(log pi - log pi_old) and the k3 estimator KL_t = exp(ref - logp) - (ref - logp) - 1 (>= 0).
    No value model: A comes from ``grpo_advantages``.

    ``kl_importance_weight=True`` multiplies the KL term by ratio_t: the responses were sampled from pi_old, so
    an unbiased estimate of KL(pi_theta || pi_ref) weights each sample by pi_theta / pi_old. TRL 1.16's
    ``GRPOTrainer`` does this by default (``use_bias_correction_kl=True``); the paper's Eq. 3 does not. On-policy
    (one update per batch) ratio_t = 1 in value, but its gradient adds KL_t * grad log pi.

    Aggregation (``loss_type``):
    - ``"grpo"``: mean over each response's tokens, then over responses (Eq. 3's 1/|o_i| term);
    - ``"dr_grpo"``: sum over all tokens / (B * max_completion_length) (Liu et al. 2025), which removes the
      length bias of 1/|o_i|.

    Shapes: ``logprobs, old_logprobs, ref_logprobs, mask: (B, T)``; ``advantages: (B,)`` -> scalar.

    Raises:
        ValueError: unknown ``loss_type`` or missing ``max_completion_length`` for dr_grpo.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages.unsqueeze(1)  # (B, 1)
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * adv)
    if beta != 0.0 and ref_logprobs is not None:
        d = ref_logprobs - logprobs
        kl = torch.exp(d) - d - 1
        per_token = per_token + beta * (kl * ratio if kl_importance_weight else kl)
    if loss_type == "grpo":
        return masked_mean(per_token, mask, dim=1).mean()
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("dr_grpo needs max_completion_length")
        return (per_token * mask).sum() / (per_token.size(0) * max_completion_length)
    raise ValueError(f"Unknown GRPO loss_type {loss_type!r} (expected 'grpo' or 'dr_grpo')")


# ----------------------------------------------------------------------------- KL


def kl_penalty_rewards(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, scores: torch.Tensor,
                       lengths: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token RLHF reward: -beta * (log pi - log pi_ref) at every token, plus the reward-model score at
    the last real token (Ziegler et al. 2019, Eq. 2; Ouyang et al. 2022, Eq. 2; Huang et al. 2022).

    Shapes: ``logprobs, ref_logprobs: (B, T)``; ``scores: (B,)``; ``lengths: (B,)`` number of valid response
    tokens (>= 1) -> ``(rewards (B, T), non_score_reward (B, T))``, zero past each length.
    """
    B, T = logprobs.shape
    mask = (torch.arange(T, device=logprobs.device)[None, :] < lengths[:, None]).to(logprobs.dtype)
    non_score = -kl_coef * (logprobs - ref_logprobs) * mask
    rewards = non_score.clone()
    rewards[torch.arange(B, device=logprobs.device), (lengths - 1).clamp(min=0)] += scores
    return rewards, non_score


def reward_normalization(scores: torch.Tensor, min_std: float = 1e-3) -> dict:
    """Gain and bias that give ``scores`` mean 0 and standard deviation 1: ``normalized = gain * score + bias``.

    Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences", Sec. 2.2) normalise the reward
    model this way on samples of the initial policy, so that the KL coefficient and the value loss's clip range
    mean the same whatever the reward model's scale (also Huang et al. 2022, "The N Implementation Details of
    RLHF with PPO"). ``gain = 1 / std``, ``bias = -mean / std`` (population std, floored at ``min_std``).

    Shape:
        scores: ``(N,)`` reward-model scores of the base policy's answers, N >= 2.

    Returns:
        ``{"mean", "std", "gain", "bias", "n"}`` (floats, ``n`` int).

    Raises:
        ValueError: fewer than two scores.
    """
    if scores.numel() < 2:
        raise ValueError("reward normalisation needs at least two scores")
    mean, std = float(scores.float().mean()), max(float(scores.float().std(unbiased=False)), min_std)
    return {"mean": mean, "std": std, "gain": 1.0 / std, "bias": -mean / std, "n": int(scores.numel())}
