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
