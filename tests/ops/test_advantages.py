"""Advantages, GAE, whitening and KL estimators against values worked out by hand."""

import math

import pytest
import torch

from lit_align.ops.advantages import gae, group_advantages, group_reward_std, kl_estimate, whiten


def test_group_advantages_by_hand():
    # Group 1: rewards 1, 0, 0, 1 -> mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735.
    # Group 2: rewards 2, 2, 2, 2 -> all centred to 0 (std 0, divided by eps only).
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    std = math.sqrt(1 / 3)
    out = group_advantages(rewards, 4, "group")
    assert out.tolist() == pytest.approx(
        [0.5 / (std + 1e-4), -0.5 / (std + 1e-4)] * 1 + [-0.5 / (std + 1e-4)] + [0.5 / (std + 1e-4)] + [0.0] * 4,
        abs=1e-6,
    )
    assert group_advantages(rewards, 4, "none").tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    # Batch std of all 8 rewards: mean 1.25; squares: 0.0625*2 + 1.5625*2 + 0.5625*4 = 5.5; /7.
    batch_std = math.sqrt(5.5 / 7)
    assert group_advantages(rewards, 4, "batch")[0].item() == pytest.approx(0.5 / (batch_std + 1e-4), abs=1e-6)


def test_group_advantages_ignore_unknown_rewards():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 0.0])  # group of 4 with one unknown: mean of 1, 0, 0 = 1/3
    out = group_advantages(rewards, 4, "none")
    assert out.tolist() == pytest.approx([2 / 3, 0.0, -1 / 3, -1 / 3])
    assert group_reward_std(rewards, 4).item() == pytest.approx(math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2))


def test_gae_by_hand():
    # One row, three tokens, the third is padding. gamma 0.9, lambda 0.5.
    # delta_1 = r1 + 0.9 * 0 - V1 = 1 - 0.5 = 0.5          (the episode ends after token 1)
    # delta_0 = r0 + 0.9 * V1 - V0 = 0 + 0.45 - 0.2 = 0.25; A0 = 0.25 + 0.9 * 0.5 * 0.5 = 0.475
    rewards = torch.tensor([[0.0, 1.0, 7.0]])
    values = torch.tensor([[0.2, 0.5, 9.0]])
    mask = torch.tensor([[True, True, False]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.475, 0.5, 0.0])
    assert ret[0].tolist() == pytest.approx([0.675, 1.0, 0.0])
    # lambda 1, gamma 1: advantage = sum of future rewards - V (Monte Carlo)
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([1.0 - 0.2, 1.0 - 0.5, 0.0])


def test_whiten_over_mask():
    values = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[True, True, False]])
    out = whiten(values, mask)
    # mean 2, unbiased var ((1)^2 + (1)^2) / 1 = 2
    assert out[0].tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0], abs=1e-6)
    kept = whiten(values, mask, shift_mean=False)
    assert kept[0, :2].tolist() == pytest.approx([2 - 1 / math.sqrt(2), 2 + 1 / math.sqrt(2)], abs=1e-6)


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    # log(pi/ref) = 0.5, -1.0
    assert kl_estimate(logp, ref, "k1")[0].tolist() == pytest.approx([0.5, -1.0])
    assert kl_estimate(logp, ref, "k2")[0].tolist() == pytest.approx([0.125, 0.5])
    assert kl_estimate(logp, ref, "k3")[0].tolist() == pytest.approx([math.exp(-0.5) - 1 + 0.5, math.exp(1) - 1 - 1])
    assert kl_estimate(logp, logp, "k3").abs().max().item() == 0.0
