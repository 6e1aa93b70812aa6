"""Process reward model loss: each step end classified right or wrong (Lightman et al., 2023; arXiv:2305.20050)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_align.types import IGNORE_INDEX


def step_classification_loss(step_logits: torch.Tensor, step_labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of the step scores against the step labels, over the labelled positions only.

    loss = mean over steps s of -[y_s log sigmoid(z_s) + (1 - y_s) log(1 - sigmoid(z_s))], where z_s is the score
    at step s's last token and y_s its label: 0 / 1 (hard) or a value in [0, 1] (soft, e.g. a Monte-Carlo success
    rate, as Math-Shepherd's soft labels). With the two reward tokens of an LM head, z_s = logit(+) - logit(-) and
    this is the cross-entropy over those two tokens.

    Args:
        step_logits: Score of every position (only labelled ones count). Shape: (B, T)
        step_labels: The label at each step end, ``IGNORE_INDEX`` elsewhere (long or float). Shape: (B, T)

    Returns:
        The mean over every labelled step of the batch. Shape: ()

    """
    labelled = step_labels != IGNORE_INDEX  # (B, T)
    return F.binary_cross_entropy_with_logits(step_logits[labelled].float(), step_labels[labelled].float())
