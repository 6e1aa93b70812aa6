"""Scoring a rollout: per-token log-probs, entropy and values of the completion tokens under a model.

Shape legend: N completions, P prompt length (left-padded), R completion length.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lit_align.roles.scoring import prompt_groups, shared_prompt_token_scores, token_scores
from lit_align.rollout.sampling import Rollout


class CompletionScores(NamedTuple):
    """Per-token outputs of a forward pass over a rollout; entropy and values only when asked. Shapes: (N, R)."""

    token_logps: torch.Tensor
    entropy: torch.Tensor | None = None
    values: torch.Tensor | None = None


def completion_logps(
    model: torch.nn.Module,
    rollout: Rollout,
    *,
    with_entropy: bool = False,
    value_head: torch.nn.Module | None = None,
    temperature: float = 1.0,
) -> CompletionScores:
    """Log-probability of each completion token under ``model`` (gradients flow when enabled by the caller).

    Position ids count real tokens only, as in generation with left padding; only the logits that predict
    completion tokens are computed (``logits_to_keep``). Consecutive rows that share a prompt (the G completions of
    one) run it once (:func:`~lit_align.roles.scoring.shared_prompt_token_scores`; exact). With ``value_head``, the
    value of the state before each completion token is read from the last hidden state at the same positions.
    ``temperature`` divides the logits, so that tokens sampled at a temperature are scored under the distribution
    that sampled them (0 means greedy and scores at 1).
    """
    n, r = rollout.completion_ids.shape
    position_ids = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
    # The last R + 1 positions are kept: position P - 1 + t predicts completion token t; the last predicts nothing.
    no_target = rollout.completion_ids.new_zeros(n, 1)
    targets = torch.cat([rollout.completion_ids, no_target], dim=1)
    mask = torch.cat([rollout.completion_mask, no_target.bool()], dim=1)
    options = {"temperature": temperature, "with_stats": with_entropy, "with_hidden": value_head is not None}
    groups = prompt_groups(model, rollout.input_ids[:, : rollout.prompt_length])
    if groups is not None:  # G completions of a prompt: the prompt runs once per group
        scores = shared_prompt_token_scores(
            model,
            rollout.input_ids,
            rollout.attention_mask,
            position_ids,
            targets,
            mask,
            prompt_length=rollout.prompt_length,
            groups=groups,
            **options,
        )
    else:
        scores = token_scores(
            model,
            rollout.input_ids,
            rollout.attention_mask,
            targets,
            mask,
            position_ids=position_ids,
            logits_to_keep=r + 1,
            **options,
        )
    entropy = None if scores.entropy is None else scores.entropy[:, :-1]
    values = None if value_head is None else value_head(scores.hidden[:, :-1])  # (N, R)
    return CompletionScores(scores.logps[:, :-1], entropy, values)


class ValueHead(torch.nn.Module):
    """A scalar value per position from a causal LM's last hidden state (PPO's critic head).

    Args:
        hidden_size: Width of the model's hidden state.

    """

    def __init__(self, hidden_size: int) -> None:
        """See the class docstring."""
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values of hidden states of shape (N, R, H); returns shape (N, R)."""
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)
