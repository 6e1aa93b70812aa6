"""KL-shaped per-token rewards, by hand: r_t = -kl_coef * (logp_t - ref_t) + [t = last] * score."""

import math

import pytest
import torch

from lit_align.ops.kl import kl_shaped_rewards, last_token_mask


def test_last_token_mask():
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    assert last_token_mask(mask).tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_kl_shaped_rewards_by_hand():
    logps = torch.tensor([[-1.0, -2.0, -0.5], [-0.2, -3.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.4, -3.0, -9.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    scores = torch.tensor([2.0, float("nan")])  # an unknown score adds nothing
    rewards, kl = kl_shaped_rewards(scores, logps, ref, mask, kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, -1.0, 0.0], [0.2, 0.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.1 + 2.0, 0.0], [-0.02, 0.0, 0.0]]))
    _, k3 = kl_shaped_rewards(scores, logps, ref, mask, kl_coef=0.1, estimator="k3")
    log_r = -0.5  # ref - logp at the first token
    assert k3[0, 0].item() == pytest.approx(math.exp(log_r) - 1 - log_r)
