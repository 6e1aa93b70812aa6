import pytest
import torch

from lit_align.ops.pairs import round_robin_scores, select_pairs

NAN = float("nan")


def test_best_and_worst_pairs_by_hand():
    rewards = torch.tensor([0.0, 1.0, 0.5, 1.0, 1.0, 1.0, NAN, 2.0, 0.0])  # three prompts, G = 3
    chosen, rejected = select_pairs(rewards, 3)
    assert chosen.tolist() == [1, 7] and rejected.tolist() == [0, 8]  # the middle prompt's scores are all equal


def test_ties_and_unknown_groups_give_no_pair():
    # prompt 0: two best tie (the first is taken); prompt 1: all unknown; prompt 2: one known score only
    rewards = torch.tensor([1.0, 1.0, 0.0, NAN, NAN, NAN, NAN, 0.5, NAN])
    chosen, rejected = select_pairs(rewards, 3)
    assert chosen.tolist() == [0] and rejected.tolist() == [2]


def test_best_rest_and_all_pairs_by_hand():
    # one prompt, G = 4: scores 0.2, 0.9, 0.2, NaN -> ranking 1 > {0, 2}; 0 and 2 tie; 3 unknown
    rewards = torch.tensor([0.2, 0.9, 0.2, NAN, 3.0, 1.0, 2.0, 0.0])
    chosen, rejected = select_pairs(rewards, 4, "best_rest")
    assert list(zip(chosen.tolist(), rejected.tolist(), strict=True)) == [(1, 0), (1, 2), (4, 5), (4, 6), (4, 7)]
    chosen, rejected = select_pairs(rewards, 4, "all")
    expected = [(1, 0), (1, 2), (4, 5), (4, 6), (4, 7), (5, 7), (6, 5), (6, 7)]  # 4 > 6 > 5 > 7: all six of prompt 2
    assert list(zip(chosen.tolist(), rejected.tolist(), strict=True)) == expected


@pytest.mark.parametrize("pairing", ["best_worst", "best_rest", "all"])
def test_min_margin_drops_close_pairs(pairing):
    rewards = torch.tensor([3.0, 1.0, 2.0, 0.0])  # margins: 3-0=3, 3-1=2, 3-2=1, 2-0=2, 2-1=1, 1-0=1
    chosen, rejected = select_pairs(rewards, 4, pairing, min_margin=1.0)  # a margin of exactly 1 is dropped
    margins = (rewards[chosen] - rewards[rejected]).tolist()
    assert all(m > 1.0 for m in margins)
    assert len(margins) == {"best_worst": 1, "best_rest": 2, "all": 3}[pairing]


def test_round_robin_scores_by_hand():
    nan = float("nan")
    # A beats B (1), A and C tie (0.5), B vs C unknown: A = (1 + 0.5) / 2, B = 0 / 1, C = 0.5 / 1.
    table = torch.tensor([[[nan, 1.0, 0.5], [0.0, nan, nan], [0.5, nan, nan]]])
    assert round_robin_scores(table).tolist() == [[0.75, 0.0, 0.5]]
    # The diagonal never counts, and an answer with no known comparison has no score.
    alone = torch.tensor([[[0.9, nan], [nan, 0.1]]])
    assert round_robin_scores(alone).isnan().all()
