"""Batch contracts shared by data modules and objectives.

Shape legend: B batch, T sequence length (padded to the longest row of the batch).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, TypedDict, runtime_checkable

import torch

IGNORE_INDEX = -100
"""Label value of a token that does not count in the loss (Hugging Face convention)."""


class Shape(StrEnum):
    """Data shapes: what a row holds (each data module reads one; the embedded tasks emit the ones they have)."""

    SFT = "sft"
    PAIRWISE = "pairwise"
    BINARY = "binary"
    PROMPT = "prompt"
    STEPWISE = "stepwise"


class SFTBatch(TypedDict):
    """A right-padded batch of token sequences for next-token training.

    Attributes:
        input_ids: Token ids, padding filled with the pad id. Shape: (B, T)
        attention_mask: 1 for real tokens, 0 for padding. Shape: (B, T)
        labels: Token ids where the loss counts, ``IGNORE_INDEX`` elsewhere; not yet shifted. Shape: (B, T)

    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


class PairwiseBatch(TypedDict):
    """Chosen and rejected sequences of B pairs stacked for one forward pass, right-padded.

    Rows ``0..B-1`` are prompt + chosen, rows ``B..2B-1`` prompt + rejected, in the same pair order.

    Attributes:
        input_ids: Token ids. Shape: (2B, T)
        attention_mask: 1 for real tokens. Shape: (2B, T)
        labels: Completion token ids, ``IGNORE_INDEX`` on prompt and padding. Shape: (2B, T)
        index: Position of each pair in its split (for cached reference log-probs). Shape: (B,)

    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


class BinaryBatch(TypedDict):
    """Labelled completions of B rows, plus mismatched (prompt, completion) rows for KTO's KL reference point.

    Rows ``0..B-1`` are prompt i + completion i; rows ``B..2B-1`` are prompt i + the completion of another row
    (a fixed pairing made by the data module).

    Attributes:
        input_ids: Token ids. Shape: (2B, T)
        attention_mask: 1 for real tokens. Shape: (2B, T)
        labels: Completion token ids, ``IGNORE_INDEX`` elsewhere. Shape: (2B, T)
        desirable: True for desirable completions. Shape: (B,)
        index: Position of each row in its split. Shape: (B,)

    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    desirable: torch.Tensor
    index: torch.Tensor


class PromptBatch(TypedDict):
    """B prompts, left-padded so that generation continues every row at the same position.

    Attributes:
        input_ids: Prompt token ids, padding on the left. Shape: (B, P)
        attention_mask: 1 for real tokens. Shape: (B, P)
        prompts: The raw prompts (text or message lists), as the reward functions receive them.
        columns: Every other column of the rows, as lists of B values (e.g. ``answer``).
        index: Position of each prompt in its split. Shape: (B,)

    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompts: list
    columns: dict[str, list]
    index: torch.Tensor


class StepwiseBatch(TypedDict):
    """B step-labelled solutions (prompt + steps, each step followed by its separator), right-padded.

    Attributes:
        input_ids: Token ids. Shape: (B, T)
        attention_mask: 1 for real tokens. Shape: (B, T)
        step_labels: At the last token of each step, its label (``long`` 0 / 1, or ``float`` in [0, 1] for soft
            labels); ``IGNORE_INDEX`` everywhere else. Shape: (B, T)
        labels: Token ids of the steps before the first wrong one (label < 0.5), ``IGNORE_INDEX`` elsewhere; not
            yet shifted (an optional language-modelling term on right steps). Shape: (B, T)
        step_token_mask: True on the tokens of the steps themselves; False on the prompt, on each separator's last
            token (where the step labels sit) and on padding. Shape: (B, T)
        index: Position of each row in its split. Shape: (B,)

    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    step_labels: torch.Tensor
    labels: torch.Tensor
    step_token_mask: torch.Tensor
    index: torch.Tensor


@runtime_checkable
class OrderedSplits(Protocol):
    """A data module whose rows can be scored once, in order (for ``reference: precomputed``).

    Batches carry ``index`` (each row's position in its split), so cached values can be looked up per batch.
    """

    def ordered_dataloaders(self) -> dict:
        """Unshuffled loaders over every split, keyed ``train``, ``val`` and (when present) ``test``."""
        ...
