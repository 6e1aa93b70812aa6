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


def likelihood_step_logits(
    token_logps: torch.Tensor, counted: torch.Tensor, scale: float, offset: float
) -> torch.Tensor:
    """Step logits from the model's own likelihood: ``scale * min(0, lowest log-prob so far) + offset``.

    At every position t: the lowest log-probability the model gives any counted token s <= t of the solution (its
    steps, not their separators), so a step scores low from the first token the model finds unlikely on, as a step
    is wrong from the first error on; the scale and offset turn it into a logit (P(right so far) = sigmoid).

    Args:
        token_logps: Log-prob of token t given the tokens before it (any value where not counted). Shape: (B, T)
        counted: Bool, True on the solution tokens that count. Shape: (B, T)
        scale: Logit per nat of the lowest log-prob (> 0).
        offset: The logit of a solution whose every token had probability 1.

    Returns:
        The logits. Shape: (B, T)

    """
    lowest = token_logps.masked_fill(~counted, 0.0).cummin(dim=-1).values.clamp(max=0.0)
    return scale * lowest + offset
