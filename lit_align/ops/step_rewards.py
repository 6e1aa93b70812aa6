"""Dense PPO rewards from a process reward model: each step's score on the token that ends the step.

``steps`` puts the score s_k of step k on its last token, as Math-Shepherd's step-by-step PPO (Wang et al., 2024,
arXiv:2312.08935) does; the return from the first token is the sum of the step scores, so a solution with more
steps collects more. ``deltas`` puts s_k - s_{k-1} there instead (s_0 = 0): the rewards telescope, the return from
the first token is the last step's score (the ``last`` aggregate) and a step is credited with how much it raised
or lowered the PRM's estimate, whatever the solution's length.
"""

from __future__ import annotations

from typing import Literal

import torch

StepRewards = Literal["sequence", "steps", "deltas"]
"""``sequence``: the PRM's aggregated score on the last token, as any reward; ``steps`` / ``deltas``: see above."""


def step_token_rewards(
    step_scores: list[list[float]],
    step_tokens: list[list[int]],
    shape: tuple[int, int],
    mode: Literal["steps", "deltas"],
) -> torch.Tensor:
    """Rewards on the completion tokens that end each step, 0 elsewhere.

    Args:
        step_scores: Score of every step of completion i (``[]``: no step, no reward). N lists.
        step_tokens: Index of each step's last token in completion i's tokens, one per score. N lists.
        shape: ``(N, R)`` of the completion tokens.
        mode: ``steps`` (each score) or ``deltas`` (each score minus the previous one).

    Returns:
        The rewards, float32. Shape: (N, R)

    """
    if mode not in ("steps", "deltas"):
        raise ValueError(f"mode must be steps or deltas, got {mode!r}")
    rewards = torch.zeros(shape)
    for i, (scores, tokens) in enumerate(zip(step_scores, step_tokens, strict=True)):
        assert len(scores) == len(tokens), f"completion {i}: {len(scores)} step scores for {len(tokens)} step ends"
        previous = 0.0
        for score, t in zip(scores, tokens, strict=True):
            rewards[i, t] += score - previous if mode == "deltas" else score
            previous = score
    return rewards
