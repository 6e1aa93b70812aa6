"""With 2 DDP ranks on CPU (gloo): each prompt's G completions stay on one rank, and distinct-2 is global."""

import torch
from torch.utils.data import DataLoader, DistributedSampler

from lit_align.data import DataSource, PromptDataModule
from lit_align.metrics import distinct_n
from lit_align.objectives.online import global_distinct_2
from lit_align.rollout import Rollout, repeat_prompts
from tests.helpers import run_on_two_processes

G = 4


def _rank(rank: int) -> dict:
    dm = PromptDataModule(source=DataSource(num_rows=12, num_val_rows=4), batch_size=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    # What Lightning does under DDP: the same loader with a distributed sampler.
    loader = DataLoader(
        loader.dataset,
        batch_size=3,
        collate_fn=loader.collate_fn,
        sampler=DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0),
    )
    seen = []
    for batch in loader:
        grouped = repeat_prompts(batch, G)
        seen += [(int(i), a) for i, a in zip(grouped["index"], grouped["columns"]["answer"], strict=True)]
    # A fake rollout whose completions differ per rank, to check distinct-2 over both ranks.
    ids = torch.tensor([[1, 2, 3, 0], [1, 2, 9, 9]]) + rank * torch.tensor([[0, 0, 5, 0], [0, 0, 0, 0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    rollout = Rollout(ids, ids.new_ones(ids.shape), ids, mask, torch.zeros(2, dtype=torch.bool))
    return {"seen": seen, "distinct": global_distinct_2(rollout).item()}


def test_groups_stay_whole_and_distinct_2_is_global():
    ranks = run_on_two_processes(_rank)
    prompts = [{i for i, _ in r["seen"]} for r in ranks]
    assert prompts[0] and prompts[1] and not prompts[0] & prompts[1]  # each prompt lives on one rank only
    for r in ranks:
        for start in range(0, len(r["seen"]), G):  # consecutive rows of G completions share one prompt
            assert len({i for i, _ in r["seen"][start : start + G]}) == 1
    # distinct-2 of all four completions together: rank 0 rows [1,2,3] [1,2,9,9]; rank 1 rows [1,2,8] [1,2,9,9]
    expected = distinct_n([[1, 2, 3], [1, 2, 9, 9], [1, 2, 8], [1, 2, 9, 9]], 2)
    assert ranks[0]["distinct"] == ranks[1]["distinct"] == expected
    assert expected != distinct_n([[1, 2, 3], [1, 2, 9, 9]], 2)  # a per-rank value would differ
