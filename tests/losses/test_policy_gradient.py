"""GRPO / PPO clipped losses against the formulas written out by hand."""

import math

import pytest
import torch

from lit_align.losses.policy_gradient import clipped_policy_loss, clipped_value_loss

# Two completions: the first has 2 counted tokens, the second 1 (its second position is padding).
MASK = torch.tensor([[True, True], [True, False]])
OLD = torch.tensor([[-1.0, -1.0], [-2.0, -2.0]], dtype=torch.float64)


def test_ratio_one_gives_minus_mean_advantage():
    adv = torch.tensor([0.5, -1.5], dtype=torch.float64)
    out = clipped_policy_loss(OLD.clone(), OLD, adv, MASK, normalization="sequence")
    assert out.loss.item() == pytest.approx(-adv.mean().item())
    assert out.low_clip.item() == 0 and out.high_clip.item() == 0


def test_clipping_and_normalizations_by_hand():
    # log ratios: row 0: +0.5, 0.0 ; row 1: -0.5 ; advantages +1 and -1; epsilon 0.2, epsilon_high 0.3
    logps = OLD + torch.tensor([[0.5, 0.0], [-0.5, 9.0]], dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    r00, r01, r10 = math.exp(0.5), 1.0, math.exp(-0.5)
    # token losses: -min(r A, clip(r) A)
    l00 = -min(r00 * 1, min(r00, 1.3) * 1)  # ratio 1.65 clipped at 1.3 -> -1.3
    l01 = -min(r01, r01)  # -1
    l10 = -min(r10 * -1, max(r10, 0.8) * -1)  # ratio 0.61 < 0.8 with A < 0: -min(-0.61, -0.8) = 0.8
    seq = ((l00 + l01) / 2 + l10 / 1) / 2
    out = clipped_policy_loss(logps, OLD, adv, MASK, epsilon=0.2, epsilon_high=0.3, normalization="sequence")
    assert out.loss.item() == pytest.approx(seq, abs=1e-9)
    const = clipped_policy_loss(
        logps, OLD, adv, MASK, epsilon=0.2, epsilon_high=0.3, normalization="constant", max_completion_length=4
    )
    assert const.loss.item() == pytest.approx((l00 + l01 + l10) / (2 * 4), abs=1e-9)
    tok = clipped_policy_loss(logps, OLD, adv, MASK, epsilon=0.2, epsilon_high=0.3, normalization="token")
    assert tok.loss.item() == pytest.approx((l00 + l01 + l10) / 3, abs=1e-9)
    assert out.high_clip.item() == pytest.approx(1 / 3) and out.low_clip.item() == pytest.approx(1 / 3)


def test_kl_term_and_gradient_sign():
    logps = OLD.clone().requires_grad_(True)
    ref = OLD - 0.5  # log pi/ref = 0.5 at every token: k3 = exp(-0.5) - 1 + 0.5
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    out = clipped_policy_loss(logps, OLD, adv, MASK, normalization="token", ref_token_logps=ref, kl_coef=0.1)
    k3 = math.exp(-0.5) - 0.5
    assert out.kl.item() == pytest.approx(k3)
    assert out.loss.item() == pytest.approx((-1 - 1 + 1) / 3 + 0.1 * k3)
    out.loss.backward()
    # Positive advantage: the loss falls when the token's log-prob rises (negative gradient), and vice versa.
    assert logps.grad[0, 0] < 0 and logps.grad[1, 0] > 0 and logps.grad[1, 1] == 0


def test_value_loss_by_hand():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.0]])
    returns = torch.tensor([[2.0, 5.0]])
    mask = torch.tensor([[True, False]])
    # plain (1 - 2)^2 = 1; clipped: 0.5 + clip(0.5, -0.2, 0.2) = 0.7 -> (0.7 - 2)^2 = 1.69 -> max 1.69 -> 0.845
    out = clipped_value_loss(values, old, returns, mask, clip=0.2)
    assert out.loss.item() == pytest.approx(0.845)
    assert out.clip_frac.item() == 1.0
