"""The reuse examples run: an objective in someone else's Trainer script and in a Fabric loop."""

import csv

import torch

from examples import fabric_loop, lightning_trainer


def test_objective_in_a_plain_trainer_script(tmp_path):
    model = lightning_trainer.main(["--max-steps", "4", "--out", str(tmp_path)])
    assert model.reference.model is not None and model.trainer.global_step == 4
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        names = set(next(csv.DictReader(f)))
    assert {"train/loss", "val/rewards/accuracies", "train/rewards/margins"} <= names


def test_objective_in_a_fabric_loop(tmp_path):
    torch.manual_seed(0)
    losses = fabric_loop.main(["--max-steps", "12", "--out", str(tmp_path)])
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])  # the random tiny-base starts learning
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        names = set(next(csv.DictReader(f)))
    assert {"train/loss", "train/token_accuracy", "train/tokens_seen"} <= names
