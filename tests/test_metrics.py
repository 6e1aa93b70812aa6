"""Preference metrics under DDP (2 CPU processes over gloo) equal the single-process metrics of the same pairs."""

import pytest
from lightning import Trainer

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.objectives import SimPO

NAMES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen")


def _validate(devices: int, batch_size: int) -> dict[str, float]:
    # SimPO's rewards need no reference, so they differ between pairs before any training.
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    dm = PairwiseDataModule(source=DataSource(num_rows=8, num_val_rows=8), batch_size=batch_size, max_length=64)
    results = trainer.validate(SimPO(), dm)
    return {k: float(v) for k, v in results[0].items()}


def test_two_ranks_log_the_global_means():
    single = _validate(devices=1, batch_size=8)  # all 8 validation pairs in one batch
    ddp = _validate(devices=2, batch_size=4)  # 4 pairs on each rank
    for name in NAMES:
        assert ddp[f"val/{name}"] == pytest.approx(single[f"val/{name}"], abs=1e-5), name
    assert 0 < single["val/rewards/accuracies"] < 1  # a value that a per-rank mean could get wrong


def test_kto_and_reward_model_metrics_by_hand():
    import torch

    from lit_align.metrics import kto_metrics, reward_model_metrics

    rewards, logps = torch.tensor([0.3, -0.1, 0.5]), torch.tensor([-1.0, -2.0, -4.0])
    out = kto_metrics(rewards, logps, torch.tensor([True, False, True]), torch.tensor(0.2))
    assert out["rewards/chosen"].item() == pytest.approx(0.4) and out["rewards/rejected"].item() == pytest.approx(-0.1)
    assert out["rewards/margins"].item() == pytest.approx(0.5) and out["logps/chosen"].item() == pytest.approx(-2.5)
    assert out["fraction_desirable"].item() == pytest.approx(2 / 3) and out["kl"].item() == pytest.approx(0.2)
    none = kto_metrics(rewards, logps, torch.tensor([True, True, True]), torch.tensor(0.0))
    assert none["rewards/rejected"].item() == 0.0  # no undesirable row in the batch
    rm = reward_model_metrics(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0]))
    assert rm["accuracy"].item() == pytest.approx(1 / 3)  # a tie counts as wrong
    assert rm["margin"].item() == pytest.approx(0.0)


def test_mean_std_win_rate_and_best_of_n_by_hand():
    import math

    from lit_align.metrics import best_of_n, mean_std, win_tie_rates

    # mean of (1, 2, 4) = 7/3; sample variance = ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = (16 + 1 + 25) / 18 = 7/3
    mean, std, known = mean_std([1.0, None, 2.0, float("nan"), 4.0])
    assert (mean, known) == (pytest.approx(7 / 3), 3) and std == pytest.approx(math.sqrt(7 / 3))
    assert mean_std([5.0]) == (5.0, 0.0, 1) and math.isnan(mean_std([None])[0])
    # pairs: win, tie, loss, tie, (unknown: left out) -> (1 + 0.5 + 0 + 0.5) / 4 = 0.5 wins, 2/4 ties
    win, tie, compared = win_tie_rates([1.0, 0.0, 0.0, 0.3, None], [0.0, 0.0, 1.0, 0.3, 1.0])
    assert (win, tie, compared) == (0.5, 0.5, 4)
    assert win_tie_rates([0.9, 0.8], [0.1, 0.2])[:2] == (1.0, 0.0)
    # best of each row: index of the max, the first of equal maxima, None when nothing is scored
    assert best_of_n([[0.1, 0.7, 0.2], [1.0, 1.0], [None, float("nan")], [None, -3.0]]) == [1, 0, None, 1]


def test_pass_at_k_kappa_and_wilson_by_hand():
    import math

    from lit_align.metrics import cohen_kappa, pass_at_k, wilson_interval

    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)  # one draw of four, one correct
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # C(3, 2) / C(4, 2) draws miss it
    # labels a: 1 1 0 0 1, b: 1 0 0 0 1 -> p_o = 4/5; p_e = (3/5)(2/5) + (2/5)(3/5) = 12/25
    # kappa = (20/25 - 12/25) / (13/25) = 8/13
    assert cohen_kappa([1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(8 / 13)
    assert cohen_kappa(["x", "y"], ["x", "y"]) == 1.0 and math.isnan(cohen_kappa(["x", "x"], ["x", "x"]))
    # Wilson, 20 of 100 at z = 1.96: centre (0.2 + 0.019208) / 1.038416, half 1.96 sqrt(0.0016 + 0.0000960) / 1.038416
    low, high = wilson_interval(20, 100)
    centre, half = (
        (0.2 + 1.96**2 / 200) / (1 + 1.96**2 / 100),
        1.96 * math.sqrt(0.0016 + 1.96**2 / 40000) / (1 + 1.96**2 / 100),
    )
    assert (low, high) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert low == pytest.approx(0.1334, abs=1e-4) and high == pytest.approx(0.2888, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0) and wilson_interval(0, 10)[0] == 0.0


def test_response_summary_by_hand():
    from lit_align.metrics import response_summary

    texts = ["the cat sat", "the cat", "a dog ran far"]
    ids = [[1, 2, 3], [1, 2], [4, 5, 6, 7]]
    out = response_summary(texts, ids, scores=[1.0, None, 0.0], correct=[True, None, False])
    assert out["responses"] == 3 and out["length_tokens_mean"] == 3.0 and out["length_tokens_std"] == 1.0
    assert out["length_words_mean"] == 3.0  # words equal tokens here
    # unigrams: 9 in all, 7 distinct (1 and 2 twice); bigrams: (1,2) (2,3) (1,2) (4,5) (5,6) (6,7): 5 of 6
    assert out["distinct_1"] == pytest.approx(7 / 9) and out["distinct_2"] == pytest.approx(5 / 6)
    assert out["distinct_1_words"] == pytest.approx(7 / 9) and out["distinct_2_words"] == pytest.approx(5 / 6)
    assert out["reward_mean"] == 0.5 and out["reward_failures"] == 1
    assert out["exact_match"] == 0.5 and out["answered"] == 2
    assert "exact_match" not in response_summary(texts, ids, correct=[None, None, None])


def test_sequence_and_token_kl_by_hand():
    import torch

    from lit_align.metrics import sequence_kl, token_kl

    policy, ref, lengths = torch.tensor([-4.0, -10.0]), torch.tensor([-6.0, -4.0]), torch.tensor([2, 10])
    # log-ratios +2 and -6: per completion (2 - 6) / 2 = -2; per token (2 - 6) / (2 + 10) = -1/3
    assert sequence_kl(policy, ref).item() == pytest.approx(-2.0)
    assert token_kl(policy, ref, lengths).item() == pytest.approx(-1 / 3)
    assert token_kl(policy[:0], ref[:0], lengths[:0]).item() == 0.0  # no tokens: 0, not nan


def test_process_reward_metrics_by_hand():
    import torch

    from lit_align.metrics import process_reward_metrics
    from lit_align.types import IGNORE_INDEX as X

    up, down = 2.0, -2.0  # judged right (p = 0.88) and judged wrong (p = 0.12)
    logits = torch.tensor([[up, up, down, 0.0], [up, down, down, 0.0], [up, up, up, 0.0]])
    labels = torch.tensor([[1, 1, 0, X], [1, 1, 0, X], [1, X, 1, X]])
    m = process_reward_metrics(logits, labels)
    # Steps: row 0 all 3 right; row 1 judges step 2 wrong (truth right): 2 of 3; row 2 both right: 7 of 8.
    assert m["step_accuracy"].item() == pytest.approx(7 / 8)
    # First error: row 0 at 2 = 2; row 1 judged at 1, truly 2; row 2 none = none.
    assert m["first_error_accuracy"].item() == pytest.approx(2 / 3)
    # Solution judged all-right exactly when it is: row 0 (no, no), row 1 (no, no), row 2 (yes, yes).
    assert m["solution_accuracy"].item() == pytest.approx(1.0)
    p_up, p_down = torch.sigmoid(torch.tensor(up)).item(), torch.sigmoid(torch.tensor(down)).item()
    assert m["scores/right"].item() == pytest.approx((5 * p_up + p_down) / 6)
    assert m["scores/wrong"].item() == pytest.approx(p_down)
    assert m["scores/margin"].item() == pytest.approx((5 * p_up + p_down) / 6 - p_down)
