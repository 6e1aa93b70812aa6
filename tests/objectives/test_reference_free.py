import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.losses.reference_free import orpo_loss, simpo_loss
from lit_align.modeling import ModelSpec
from lit_align.objectives import ORPO, SimPO

TINY = "lit-align/tiny-sft"


@pytest.mark.parametrize(("cls", "kwargs"), [(SimPO, {"beta": 2.5, "gamma": 0.3}), (ORPO, {"lam": 0.2})])
def test_reference_free_objectives_train_without_a_reference(tmp_path, cls, kwargs):
    module = cls(policy=ModelSpec(name_or_path=TINY), optimizer=lambda p: torch.optim.AdamW(p, lr=1e-4), **kwargs)
    assert all(module.hparams[k] == v for k, v in kwargs.items())
    module.configure_model()
    assert not hasattr(module, "reference") or module.reference is None
    data = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=24, num_val_rows=8), batch_size=8)
    data.setup("fit")
    batch = next(iter(data.splits.loader("train", shuffle=False)))
    with torch.no_grad():
        logps, lengths = module(batch)
        means = (logps / lengths).chunk(2)
        expected = (simpo_loss(*means, **kwargs) if cls is SimPO else orpo_loss(*means, **kwargs)).losses.mean()
        module.policy.eval()
    before = {n: p.detach().clone() for n, p in module.policy.named_parameters()}
    trainer = Trainer(
        max_steps=3,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=3,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, data)
    assert any(not p.equal(before[n]) for n, p in module.policy.named_parameters())
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"train/loss", "train/rewards/margins", "train/rewards/accuracies", "val/rewards/accuracies"} <= set(rows[0])
    assert torch.isfinite(expected)
