"""Length-grouped batching: grouping, coverage, shuffling between batches, and exact resume."""

import random

import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.data.sampling import LengthGroupedSampler, padded_length
from tests.helpers import write_jsonl


def _lengths(n: int = 240, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [int(rng.lognormvariate(4, 0.8)) + 1 for _ in range(n)]  # long-tailed, as real preference data


def _batches(sampler: LengthGroupedSampler, batch_size: int) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _padding(batches: list[list[int]], lengths: list[int]) -> float:
    """Share of a padded batch's tokens that are padding."""
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


def test_padded_length_of_each_row_shape():
    assert padded_length({"input_ids": [1, 2, 3], "labels": [0, 0, 3]}) == 3  # SFT
    assert padded_length({"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5, 6]}) == 5  # a pair
    assert padded_length({"prompt_ids": [1, 2], "columns": {"answer": "4"}}) == 2  # a prompt
    assert padded_length({"prompt_ids": [1], "completion_ids": [2, 3], "kl_completion_ids": [4]}) == 3  # KTO


def test_batches_group_similar_lengths_cover_every_row_and_alternate():
    lengths = _lengths()
    sampler = LengthGroupedSampler(lengths, 8, seed=3, megabatch=30)  # one mega-batch: sorted throughout
    batches = _batches(sampler, 8)
    assert sorted(i for b in batches for i in b) == list(range(240))  # every row once per epoch
    generator = torch.Generator().manual_seed(0)
    shuffled = torch.randperm(240, generator=generator).view(-1, 8).tolist()
    assert _padding(batches, lengths) < 0.5 * _padding(shuffled, lengths)
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest != sorted(longest, reverse=True)  # batch order is shuffled, not longest first
    sampler.set_epoch(1)
    assert _batches(sampler, 8) != batches  # a new grouping each epoch


def test_processes_get_disjoint_equal_slices_of_each_global_batch():
    lengths = _lengths(n=100)
    ranks = [LengthGroupedSampler(lengths, 4, num_replicas=2, rank=r, seed=1) for r in (0, 1)]
    orders = [list(s) for s in ranks]
    assert len(orders[0]) == len(orders[1]) == len(ranks[0]) == 52  # 100 rows -> 13 global batches of 8
    assert set(orders[0]) | set(orders[1]) == set(range(100))
    for step in range(13):  # the two halves of a global batch are neighbours in the sorted order
        a, b = (o[4 * step : 4 * step + 4] for o in orders)
        assert min(lengths[i] for i in a) >= max(lengths[i] for i in b)


def test_a_loader_restored_mid_epoch_serves_exactly_the_remaining_batches():
    rows = [{"index": i, "input_ids": [1] * n} for i, n in enumerate(_lengths(n=96))]

    def loader() -> StatefulDataLoader:
        sampler = LengthGroupedSampler([padded_length(r) for r in rows], 4, seed=7)
        sampler.set_epoch(2)
        return StatefulDataLoader(rows, 4, sampler=sampler, collate_fn=lambda b: [r["index"] for r in b])

    uninterrupted = list(loader())
    first = loader()
    served = []
    for batch in first:
        served.append(batch)
        if len(served) == 5:
            state = first.state_dict()
            break
    resumed = loader()
    resumed.load_state_dict(state)
    assert served + list(resumed) == uninterrupted


def test_pairwise_module_batches_by_length_when_asked(tmp_path):
    rng = random.Random(0)
    rows = [dict(prompt="q" * rng.randint(1, 60), chosen="a" * rng.randint(1, 60), rejected="b") for _ in range(64)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)

    def padding(group: bool) -> float:
        data = PairwiseDataModule(source=DataSource(path=str(path)), batch_size=8, group_by_length=group)
        data.setup("fit")
        loader = data.splits.loader("train", shuffle=True)
        padded = real = 0
        for batch in loader:
            padded += batch["attention_mask"].numel()
            real += int(batch["attention_mask"].sum())
        return 1 - real / padded

    assert padding(True) < 0.6 * padding(False)
