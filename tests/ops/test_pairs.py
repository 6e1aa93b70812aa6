import torch

from lit_align.ops.pairs import best_and_worst


def test_best_and_worst_pairs_by_hand():
    rewards = torch.tensor([0.0, 1.0, 0.5, 1.0, 1.0, 1.0, float("nan"), 2.0, 0.0])  # three prompts, G = 3
    chosen, rejected = best_and_worst(rewards, 3)
    assert chosen.tolist() == [1, 7] and rejected.tolist() == [0, 8]  # the middle prompt's scores are all equal


def test_ties_and_unknown_groups_give_no_pair():
    # prompt 0: two best tie (the first is taken); prompt 1: all unknown; prompt 2: one known score only
    rewards = torch.tensor([1.0, 1.0, 0.0, float("nan"), float("nan"), float("nan"), float("nan"), 0.5, float("nan")])
    chosen, rejected = best_and_worst(rewards, 3)
    assert chosen.tolist() == [0] and rejected.tolist() == [2]
