"""Length-grouped batching: batches of rows of similar length, so less of each batch is padding.

Shape of one epoch (seed and epoch fix it, so a resumed run replays it exactly):

1. shuffle all rows;
2. cut the order into mega-batches of ``megabatch`` global batches (a global batch is ``batch_size`` rows on
   each of the ``num_replicas`` processes) and sort each mega-batch by length, longest first;
3. cut into global batches and shuffle their order, so long and short batches alternate through the epoch
   instead of running longest-first;
4. each process takes its ``batch_size`` slice of every global batch.

The randomness of step 1 keeps batches from being the same rows every epoch; the mega-batch bounds how far
sorting reaches (the idea of Hugging Face's ``LengthGroupedSampler``; here also shuffled between batches and
resumable mid-epoch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler


def padded_length(row: dict[str, Any]) -> int:
    """Tokens a tokenized row takes in a padded batch: its prompt plus its longest other id list.

    SFT rows (``input_ids``), pairs (``prompt_ids`` + the longer of ``chosen_ids`` / ``rejected_ids``), prompts
    (``prompt_ids``) and unpaired feedback (``prompt_ids`` + ``completion_ids``).
    """
    prompt = len(row.get("prompt_ids", ()))
    others = [len(v) for k, v in row.items() if k.endswith("_ids") and k != "prompt_ids" and isinstance(v, list)]
    return prompt + max(others, default=0)


class LengthGroupedSampler(StatefulDistributedSampler):
    """Row indices in length-grouped batches, identical on resume (seed, epoch and rows already served).

    A ``DistributedSampler`` (so Lightning does not wrap it) that torchdata's ``StatefulDataLoader`` saves and
    restores mid-epoch; Lightning calls :meth:`set_epoch` before each epoch.

    Args:
        lengths: Padded length of each row (:func:`padded_length`).
        batch_size: Rows per batch on each process.
        num_replicas: Processes (default: the process group's size, or 1).
        rank: This process (default: its rank, or 0).
        seed: Seed of the shuffles (the run's seed).
        megabatch: Global batches per sorted mega-batch.

    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        megabatch: int = 50,
    ) -> None:
        """See the class docstring."""
        if num_replicas is None and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            num_replicas, rank = 1, 0
        super().__init__(list(range(len(lengths))), num_replicas, rank, shuffle=True, seed=seed)
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size, self.megabatch = batch_size, megabatch

    def order(self) -> list[int]:
        """Indices of this process for the current epoch, before any are skipped."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        width = self.batch_size * self.num_replicas  # one global batch
        total = -(-len(order) // width) * width  # repeat rows so every process gets the same number of full batches
        order = order.repeat(-(-total // len(order)))[:total]
        span = width * self.megabatch
        grouped = torch.cat(
            [part[torch.argsort(self.lengths[part], descending=True, stable=True)] for part in order.split(span)]
        )
        batches = grouped.view(-1, width)[torch.randperm(len(grouped) // width, generator=generator)]
        mine = batches[:, self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return mine.reshape(-1).tolist()

    def __len__(self) -> int:
        width = self.batch_size * self.num_replicas
        return -(-len(self.lengths) // width) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        self.yielded = 0
        if self.next_yielded is not None:  # restored from a checkpoint: skip what was already served
            self.yielded, self.next_yielded = self.next_yielded, None
        for index in self.order()[self.yielded :]:
            self.yielded += 1
            yield index
