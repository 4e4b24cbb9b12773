"""The loss functions against hand-computed values (each expected number is worked out in a comment)."""

import math

import pytest
import torch

from alignment.generation import truncate_after_eos
from alignment.losses import (bradley_terry_loss, dpo_loss, gae, grpo_advantages, grpo_loss, kl_penalty_rewards,
                              masked_whiten, ppo_policy_loss, ppo_value_loss, sequence_logps)

T = torch.tensor


def test_bradley_terry_hand_values():
    # -log sigma(1) = log(1 + e^-1) = 0.3132617; -log sigma(-1) = 1.3132617
    losses = bradley_terry_loss(T([2.0, 0.0]), T([1.0, 1.0]))
    assert torch.allclose(losses, T([0.3132617, 1.3132617]), atol=1e-6)
    # margin shifts the difference: -log sigma(2 - 1 - 1) = log 2
    assert bradley_terry_loss(T([2.0]), T([1.0]), margin=T([1.0])).item() == pytest.approx(math.log(2), abs=1e-6)


def test_dpo_sigmoid_and_ipo_hand_values():
    # h = (-10 + 11) - (-12 + 11) = 2; sigmoid: -log sigma(0.5 * 2) = 0.3132617; ipo: (2 - 1 / (2 * 0.5))^2 = 1
    args = (T([-10.0]), T([-12.0]), T([-11.0]), T([-11.0]))
    losses, chosen_r, rejected_r = dpo_loss(*args, beta=0.5)
    assert losses.item() == pytest.approx(0.3132617, abs=1e-6)
    assert (chosen_r.item(), rejected_r.item()) == pytest.approx((0.5, -0.5))
    assert dpo_loss(*args, beta=0.5, loss_type="ipo")[0].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(*args, loss_type="hinge-typo")


def test_dpo_prefers_chosen():
    # the policy putting more mass on the chosen response has the lower loss
    good = dpo_loss(T([-5.0]), T([-9.0]), T([-7.0]), T([-7.0]))[0]
    bad = dpo_loss(T([-9.0]), T([-5.0]), T([-7.0]), T([-7.0]))[0]
    assert good.item() < math.log(2) < bad.item()


def test_gae_hand_values():
    # deltas: t2 = 1 + 0 - 0.5 = 0.5, t1 = 0 + 0.5 - 0.5 = 0, t0 = 0
    # A2 = 0.5, A1 = 0.95 * 0.5 = 0.475, A0 = 0.95 * 0.475 = 0.45125; returns = A + V
    adv, ret = gae(T([[0.0, 0.0, 1.0]]), T([[0.5, 0.5, 0.5]]), torch.ones(1, 3), gamma=1.0, lam=0.95)
    assert torch.allclose(adv, T([[0.45125, 0.475, 0.5]]))
    assert torch.allclose(ret, T([[0.95125, 0.975, 1.0]]))


def test_gae_ignores_padding():
    # the value 9 at a padded position must not leak: A1 = 1 - 0.5 = 0.5, A0 = 0 + 0.5 - 0.5 + 0.95 * 0.5
    adv, _ = gae(T([[0.0, 1.0, 0.0]]), T([[0.5, 0.5, 9.0]]), T([[1.0, 1.0, 0.0]]), gamma=1.0, lam=0.95)
    assert torch.allclose(adv, T([[0.475, 0.5, 0.0]]))


def test_ppo_policy_loss_clipping():
    # token 1: ratio 1.5, A=+1 -> max(-1.5, -1.2) = -1.2 (clipped); token 2: ratio 0.5, A=+1 -> max(-0.5, -0.8) = -0.5
    # token 3: ratio 0.5, A=-1 -> max(0.5, 0.8) = 0.8 (clipped); mean = (-1.2 - 0.5 + 0.8) / 3 = -0.3
    logp = torch.log(T([[1.5, 0.5, 0.5]]))
    loss, stats = ppo_policy_loss(logp, torch.zeros(1, 3), T([[1.0, 1.0, -1.0]]), torch.ones(1, 3), clip_range=0.2)
    assert loss.item() == pytest.approx(-0.3, abs=1e-6)
    assert stats["clipfrac"].item() == pytest.approx(2 / 3)


def test_ppo_value_loss_clipping():
    # V=1, old=0, R=2, eps=0.2: clipped V = 0.2; max((1-2)^2, (0.2-2)^2) = 3.24; loss = 0.5 * 3.24 = 1.62
    loss, stats = ppo_value_loss(T([[1.0]]), T([[0.0]]), T([[2.0]]), torch.ones(1, 1), clip_range_value=0.2)
    assert loss.item() == pytest.approx(1.62)
    assert stats["clipfrac"].item() == 1.0


def test_grpo_advantages_hand_values():
    # group [1, 2, 3, 4]: mean 2.5, unbiased std sqrt(5/3) = 1.2909944
    adv = grpo_advantages(T([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0]), group_size=4)
    expected = T([-1.5, -0.5, 0.5, 1.5]) / (math.sqrt(5 / 3) + 1e-4)
    assert torch.allclose(adv[:4], expected, atol=1e-6)
    assert torch.allclose(adv[4:], torch.zeros(4))  # identical rewards carry no signal
    assert torch.allclose(grpo_advantages(T([1.0, 3.0]), 2, scale_rewards=False), T([-1.0, 1.0]))
    with pytest.raises(ValueError):
        grpo_advantages(T([1.0, 2.0, 3.0]), group_size=2)


def test_grpo_loss_hand_values():
    # ratio 1; d = ref - logp = log 2 -> k3 = 2 - log 2 - 1 = 0.3068528; beta 0.1 adds 0.03068528 per token
    # seq 1 (2 tokens, A=1): -1 + 0.0306853; seq 2 (1 token, A=0.5): -0.5 + 0.0306853
    logp = torch.full((2, 2), -1.0)
    ref = logp + math.log(2)
    mask = T([[1.0, 1.0], [1.0, 0.0]])
    k = 0.1 * (2 - math.log(2) - 1)
    grpo = grpo_loss(logp, logp, ref, T([1.0, 0.5]), mask, beta=0.1, loss_type="grpo")
    assert grpo.item() == pytest.approx(((-1 + k) + (-0.5 + k)) / 2, abs=1e-6)
    dr = grpo_loss(logp, logp, ref, T([1.0, 0.5]), mask, beta=0.1, loss_type="dr_grpo", max_completion_length=4)
    assert dr.item() == pytest.approx((2 * (-1 + k) + (-0.5 + k)) / (2 * 4), abs=1e-6)


def test_kl_penalty_rewards_places_score_at_last_token():
    # non-score: -0.1 * (logp - ref) = [-0.1, 0, 0]; score 3 at index lengths-1 = 1; index 2 is padding
    rewards, non_score = kl_penalty_rewards(T([[-1.0, -1.0, -1.0]]), T([[-2.0, -1.0, -5.0]]), T([3.0]), T([2]), 0.1)
    assert torch.allclose(rewards, T([[-0.1, 3.0, 0.0]]))
    assert torch.allclose(non_score, T([[-0.1, 0.0, 0.0]]))


def test_masked_whiten():
    # valid [1, 2, 3]: mean 2, variance 2/3 -> [-1.2247, 0, 1.2247]; padding stays 0
    out = masked_whiten(T([[1.0, 2.0, 3.0, 100.0]]), T([[1.0, 1.0, 1.0, 0.0]]))
    assert torch.allclose(out, T([[-1.2247449, 0.0, 1.2247449, 0.0]]), atol=1e-5)


def test_truncate_after_eos_uses_eos_position_not_padding():
    # eos = 2 and pad = 2 would be indistinguishable by id; lengths come from the first EOS
    lengths, has_eos = truncate_after_eos(T([[5, 2, 2, 2], [5, 6, 7, 8], [2, 2, 2, 2]]), eos_token_id=2)
    assert lengths.tolist() == [2, 4, 1]
    assert has_eos.tolist() == [True, False, True]


def test_sequence_logps_temperature():
    # logits [0, log 3] / T=1 -> p = [1/4, 3/4]; with T -> inf the distribution flattens to 1/2
    logits = T([[[0.0, math.log(3.0)]]])
    assert sequence_logps(logits, T([[1]])).item() == pytest.approx(math.log(0.75))
    assert sequence_logps(logits, T([[1]]), temperature=1e6).item() == pytest.approx(math.log(0.5), abs=1e-5)


def test_reward_normalization_gives_mean_zero_std_one():
    from alignment.losses import reward_normalization

    scores = torch.tensor([1.0, 3.0, 5.0, 7.0])  # mean 4, population std sqrt(5)
    norm = reward_normalization(scores)
    assert norm["mean"] == pytest.approx(4.0) and norm["std"] == pytest.approx(5 ** 0.5) and norm["n"] == 4
    normalized = scores * norm["gain"] + norm["bias"]
    assert float(normalized.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(normalized.std(unbiased=False)) == pytest.approx(1.0)
    assert reward_normalization(torch.tensor([2.0, 2.0]))["std"] == 1e-3  # identical scores: floored, finite
    with pytest.raises(ValueError, match="at least two"):
        reward_normalization(torch.tensor([1.0]))
