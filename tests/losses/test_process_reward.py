"""The PRM step loss against the binary cross-entropy written out by hand."""

import math

import pytest
import torch

from lit_align.losses.process_reward import likelihood_step_logits, step_classification_loss
from lit_align.types import IGNORE_INDEX

X = IGNORE_INDEX


def test_hard_labels_by_hand():
    # Two labelled steps: logit 0 for a right step (-log 1/2 = ln 2) and logit ln 3 for a wrong one
    # (sigmoid = 3/4, so -log(1 - 3/4) = ln 4); the other positions, whatever their logits, do not count.
    logits = torch.tensor([[5.0, 0.0, -7.0], [9.0, 9.0, math.log(3)]])
    labels = torch.tensor([[X, 1, X], [X, X, 0]])
    assert step_classification_loss(logits, labels).item() == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_soft_labels_by_hand():
    # Label 0.25 at logit ln 3 (p = 3/4): -(0.25 log 3/4 + 0.75 log 1/4).
    logits = torch.tensor([[0.0, math.log(3)]])
    labels = torch.tensor([[float(X), 0.25]])
    expected = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    assert step_classification_loss(logits, labels).item() == pytest.approx(expected)


def test_likelihood_logits_are_the_running_lowest_log_prob_scaled_and_offset():
    # Positions: prompt, step token, step token, separator, step token, separator (not counted: prompt, separators).
    logps = torch.tensor([[-9.0, -0.5, -0.1, -8.0, -3.0, -7.0]])
    counted = torch.tensor([[False, True, True, False, True, False]])
    # Running lowest counted log-prob: 0 (nothing yet), -0.5, -0.5, -0.5 (the separator is skipped), -3, -3.
    expected = torch.tensor([[0.0, -0.5, -0.5, -0.5, -3.0, -3.0]]) * 0.5 + 2.0
    torch.testing.assert_close(likelihood_step_logits(logps, counted, 0.5, 2.0), expected)
    assert likelihood_step_logits(torch.tensor([[0.2]]), torch.tensor([[True]]), 1.0, 0.0).item() == 0.0  # <= 0
