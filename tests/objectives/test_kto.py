import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import BinaryDataModule, DataSource
from lit_align.losses.kto import kto_loss, kto_reference_point
from lit_align.objectives import KTO
from lit_align.roles.models import ModelSpec

TINY = "lit-align/tiny-sft"


def _data():
    dm = BinaryDataModule(tokenizer=TINY, source=DataSource(num_rows=32, num_val_rows=8), batch_size=8)
    dm.setup("fit")
    return dm


def test_kto_reference_modes_agree_on_the_first_step():
    dm = _data()
    batch = next(iter(dm.splits.loader("train", shuffle=False)))
    losses = []
    for spec, mode in [
        (ModelSpec(name_or_path=TINY), "copy"),
        (ModelSpec(name_or_path=TINY, finetune="lora"), "adapter"),
        (ModelSpec(name_or_path=TINY), "precomputed"),
    ]:
        module = KTO(policy=spec, reference=mode)
        module.configure_model()
        module.reference.precompute(dm, lambda b: b)
        module.policy.eval()
        with torch.no_grad():
            logps, _ = module(batch)
            ref = module.reference.logps(batch, "train")
        z0 = kto_reference_point(logps.chunk(2)[1], ref.chunk(2)[1])
        out = kto_loss(logps.chunk(2)[0], ref.chunk(2)[0], z0, batch["desirable"])
        losses.append(out.losses.mean().item())
        assert out.kl.item() == pytest.approx(0.0, abs=1e-5)  # policy == reference before training
    assert losses[0] == pytest.approx(0.5, abs=1e-5)  # 1 - sigmoid(0) for every row
    assert losses == pytest.approx([losses[0]] * 3, abs=1e-6)


def test_kto_trains_and_logs(tmp_path):
    module = KTO(policy=ModelSpec(name_or_path=TINY), optimizer=lambda p: torch.optim.AdamW(p, lr=1e-4))
    module.configure_model()
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
    trainer.fit(module, _data())
    assert any(not p.equal(before[n]) for n, p in module.policy.named_parameters())
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    names = {"loss", "kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"}
    assert {f"{s}/{n}" for s in ("train", "val") for n in names} <= set(rows[0])


def test_kto_nll_term_is_the_token_mean_over_desirable_completions():
    """loss = mean KTO loss + w * (-sum of desirable rows' log-probs / their completion tokens), by hand."""
    module = KTO(policy=ModelSpec(name_or_path=TINY), sft_weight=0.5)
    module.configure_model()
    module.policy.eval()
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    dm = _data()  # its 8 validation rows are one batch
    (metrics,) = trainer.validate(module, dm, verbose=False)
    val = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        logps, lengths = module(val)
        ref = module.reference.logps(val, "val")
    y, n, d = logps.chunk(2)[0], lengths.chunk(2)[0], val["desirable"]
    z0 = kto_reference_point(logps.chunk(2)[1], ref.chunk(2)[1])
    kto = kto_loss(y, ref.chunk(2)[0], z0, d).losses.mean().item()
    nll = -(y[d].sum() / n[d].sum()).item()
    assert d.any() and (~d).any()
    assert metrics["val/nll"] == pytest.approx(nll, abs=1e-5)
    assert metrics["val/loss"] == pytest.approx(kto + 0.5 * nll, abs=1e-5)
