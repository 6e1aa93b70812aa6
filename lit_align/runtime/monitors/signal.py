"""Monitors that stop a run which has nothing to learn from, instead of letting it train on a dead signal.

Shape legend: N completions (prompts x G), G completions per prompt.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn

from lit_align.errors import SignalError
from lit_align.rewards.combine import RewardScores

SPREAD_EPS = 1e-6


def no_signal_reason(scores: RewardScores, group_size: int) -> str | None:
    """Why a batch of rewards carries no learning signal, or None when it does.

    No signal: no completion has a usable reward (every reward returned None / NaN / inf or failed), or every
    group of ``group_size`` completions got one reward (zero spread: group-relative advantages and pairs are all
    zero), or, with one completion per prompt, every completion of the batch got the same reward.

    Args:
        scores: The batch's rewards. ``scores.total`` shape: (N,), NaN where unknown.
        group_size: Completions per prompt (G).

    """
    total = scores.total
    known = ~total.isnan()
    if not known.any():
        failed = ", ".join(f"'{name}' on {count}" for name, count in scores.failures.items()) or "none counted"
        return (
            f"no completion of {len(total)} has a usable reward (failures: {failed}); check that the reward can read "
            "the data's columns and returns floats"
        )
    grouped = total.view(-1, group_size) if group_size > 1 else total.view(1, -1)  # (groups, members)
    if grouped.shape[1] < 2:
        return None
    spread = torch.stack([row[~row.isnan()].max() - row[~row.isnan()].min() for row in grouped if (~row.isnan()).any()])
    if (spread < SPREAD_EPS).all():
        value = total[known][0].item()
        where = f"every group of {group_size} completions" if group_size > 1 else "every completion"
        return (
            f"{where} got the same reward (e.g. {value:g}), so there is nothing to compare; the task may be too hard "
            "or too easy for the policy, or the reward may ignore the completion"
        )
    return None


class SignalMonitor:
    """Warns on a batch without learning signal and stops the run after ``patience`` such batches in a row.

    Under several processes a batch counts as empty only when it is empty on every process, so all processes stop
    together.

    Args:
        patience: Batches in a row without signal before the run stops; 0 only warns.
        key: Config key of ``patience``, named in the stop message.

    """

    def __init__(self, patience: int, key: str) -> None:
        """See the class docstring."""
        self.patience, self.key = patience, key
        self.in_a_row = 0

    def update(self, scores: RewardScores, group_size: int, device: torch.device | None = None) -> int:
        """Check one training batch; return how many batches in a row had no signal.

        Raises:
            SignalError: ``patience`` batches in a row without signal.

        """
        reason = no_signal_reason(scores, group_size)
        empty = torch.tensor(float(reason is not None), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(empty, op=dist.ReduceOp.MIN)
        if not empty.item():
            self.in_a_row = 0
            return 0
        self.in_a_row += 1
        reason = reason or "another process's batch had no signal"
        if self.patience and self.in_a_row >= self.patience:
            raise SignalError(
                f"stopped after {self.in_a_row} batches in a row without learning signal: {reason} "
                f"(set {self.key}: 0 to only warn)"
            )
        if self.in_a_row == 1:
            rank_zero_warn(f"a training batch has no learning signal: {reason}")
        return self.in_a_row
