"""Reference-free preference losses (SimPO, CPO, ORPO) inside the DPO objective: no reference, and the logged loss
equals the formula written out by hand on the module's own log-probs."""

import csv
import math

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.objectives import DPO
from lit_align.roles.models import ModelSpec

TINY = "lit-align/tiny-sft"


def _logsig(x):
    return -math.log1p(math.exp(-x))


def _log_odds(mean):
    return mean - math.log1p(-math.exp(mean))


def _by_hand(loss_type, pc, pr, lc, lr):
    """SimPO Eq. 6 on per-token means; CPO-SimPO adds the chosen NLL (token mean); ORPO: NLL + lambda * odds term."""
    n = len(pc)
    nll = -sum(pc) / sum(lc)
    if loss_type == "orpo":
        ratio = [-0.2 * _logsig(_log_odds(pc[i] / lc[i]) - _log_odds(pr[i] / lr[i])) for i in range(n)]
        return nll + sum(ratio) / n
    simpo = sum(-_logsig(2.5 * pc[i] / lc[i] - 2.5 * pr[i] / lr[i] - 0.3) for i in range(n)) / n
    return simpo + (nll if loss_type == "cpo_simpo" else 0.0)


@pytest.mark.parametrize(
    ("loss_type", "kwargs"),
    [
        ("simpo", {"beta": 2.5, "simpo_gamma": 0.3}),
        ("cpo_simpo", {"beta": 2.5, "simpo_gamma": 0.3}),
        ("orpo", {"beta": 0.2}),
    ],
)
def test_reference_free_losses_train_without_a_reference_and_match_the_formula(tmp_path, loss_type, kwargs):
    module = DPO(
        policy=ModelSpec(name_or_path=TINY),
        loss_type=loss_type,
        optimizer=lambda p: torch.optim.AdamW(p, 1e-4),
        **kwargs,
    )
    module.configure_model()
    assert module.reference.kind == "none" and module.reference.model is None
    data = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=24, num_val_rows=8), batch_size=8)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))  # the one validation batch (8 pairs)
    module.policy.eval()
    with torch.no_grad():
        logps, lengths = module(batch)
    (pc, pr), (lc, lr) = (x.tolist() for x in logps.chunk(2)), (x.tolist() for x in lengths.chunk(2))
    assert len(set(lc + lr)) > 1  # lengths differ, so a missing length normalisation changes the value
    trainer = Trainer(
        max_steps=3,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    (before,) = trainer.validate(module, data, verbose=False)
    assert before["val/loss"] == pytest.approx(_by_hand(loss_type, pc, pr, lc, lr), abs=1e-5)
    params = {n: p.detach().clone() for n, p in module.policy.named_parameters()}
    trainer.fit(module, data)
    assert any(not p.equal(params[n]) for n, p in module.policy.named_parameters())
    with open(next(tmp_path.glob("lightning_logs/version_*/metrics.csv"))) as f:
        names = set(next(csv.DictReader(f)))
    assert {"train/loss", "train/rewards/margins", "train/rewards/accuracies"} <= names and "train/kl" not in names
