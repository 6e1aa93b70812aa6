"""Held-out pairwise accuracy of a reward model (``lit-align evaluate-rm``), overall and per group of rows."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

import torch
from jsonargparse import auto_cli

from lit_align.data.pairwise import pair_texts
from lit_align.data.sources import DataSource, load_splits, readable_rows
from lit_align.data.validation import required_field
from lit_align.domains import PositiveInt, check_args
from lit_align.errors import LitAlignError
from lit_align.rewards.model import RewardModelScorer
from lit_align.types import Shape


def pairwise_accuracy(
    chosen_scores: torch.Tensor, rejected_scores: torch.Tensor, groups: list[Any] | None = None
) -> dict[str, Any]:
    """Share of pairs whose chosen completion scores strictly higher, overall and per group.

    accuracy = mean_b [r_c[b] > r_r[b]]   (a tie counts as wrong),   margin = mean_b (r_c[b] - r_r[b])

    Args:
        chosen_scores: Reward of each chosen completion. Shape: (B,)
        rejected_scores: Reward of each rejected completion. Shape: (B,)
        groups: Optional group label of each pair (any value; reported under ``str(label)``), length B.

    Returns:
        ``{"rows", "accuracy", "margin"}`` plus ``"groups": {label: {"rows", "accuracy"}}`` when groups are given.

    """
    assert chosen_scores.shape == rejected_scores.shape and chosen_scores.dim() == 1, "scores must be (B,)"
    wins = (chosen_scores > rejected_scores).float()  # (B,)
    result: dict[str, Any] = {
        "rows": len(wins),
        "accuracy": round(wins.mean().item(), 4) if len(wins) else 0.0,
        "margin": round((chosen_scores - rejected_scores).mean().item(), 4) if len(wins) else 0.0,
    }
    if groups is not None:
        assert len(groups) == len(wins), "one group label per pair"
        members: dict[str, list[int]] = defaultdict(list)
        for i, label in enumerate(groups):
            members[str(label)].append(i)
        result["groups"] = {
            label: {"rows": len(idx), "accuracy": round(wins[idx].mean().item(), 4)}
            for label, idx in sorted(members.items())
        }
    return result


def evaluate_reward_model(
    model: str | None = None,
    source: DataSource = DataSource(split="test", val_split=None, num_rows=500),  # noqa: B008
    prompt_field: str = "prompt",
    chosen_field: str = "chosen",
    rejected_field: str = "rejected",
    group_field: str | None = None,
    batch_size: PositiveInt = 64,
    trust_remote_code: bool = False,
) -> dict:
    """Print a reward model's held-out pairwise accuracy (JSON on one line) and return it.

    Scores go through :class:`lit_align.rewards.model.RewardModelScorer`, the tokenization used in training.

    Args:
        model: Required: a ``RewardModel`` run's ``hf_model`` folder, or any sequence-classification model.
        source: Preference rows; defaults to 500 pairs of the embedded task's test split.
        prompt_field: Column of the prompt; without it chosen and rejected are whole conversations sharing a prompt.
        chosen_field: Column of the preferred completion.
        rejected_field: Column of the dispreferred completion.
        group_field: Column to break the accuracy down by (e.g. ``subset``; the embedded task has ``wrong_by``).
        batch_size: Completions scored per forward pass.
        trust_remote_code: Allow model code from the hub.

    """
    check_args(evaluate_reward_model, locals(), "--")
    if model is None:
        raise LitAlignError("--model: give a reward model folder (e.g. runs/rm/hf_model)")
    rows, _ = load_splits(source, Shape.PAIRWISE)
    prompts, chosen, rejected, groups = [], [], [], []
    for i, row in readable_rows(rows):
        prompt, completion, other = pair_texts(row, (prompt_field, chosen_field, rejected_field), rows.origin, i)
        prompts.append(prompt)
        chosen.append(completion)
        rejected.append(other)
        if group_field is not None:
            groups.append(required_field(row, group_field, rows.origin, i))
    scorer = RewardModelScorer(model, batch_size=batch_size, trust_remote_code=trust_remote_code)
    scores = torch.tensor(scorer(prompts + prompts, chosen + rejected))  # (2B,)
    result = {"model": model, "data": rows.origin}
    result.update(pairwise_accuracy(*scores.chunk(2), groups if group_field is not None else None))
    print(json.dumps(result))
    return result


def evaluate_reward_model_cli(args: list[str] | None = None) -> None:
    """``lit-align evaluate-rm --help``."""
    auto_cli(
        evaluate_reward_model,
        args=sys.argv[2:] if args is None else args,
        prog="lit-align evaluate-rm",
        exit_on_error=False,
    )
