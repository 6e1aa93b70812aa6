import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.errors import LitAlignError
from lit_align.modeling import ModelSpec
from lit_align.objectives import DPO
from lit_align.objectives.logps import batch_reference_logps

TINY = "lit-align/tiny-sft"


def _data():
    dm = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=32, num_val_rows=8), batch_size=8)
    dm.setup("fit")
    return dm


def _trainer(tmp_path, steps):
    return Trainer(
        max_steps=steps,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=steps,
        num_sanity_val_steps=0,
    )


def _first_step_loss(spec, reference, batch, dm):
    torch.manual_seed(0)
    module = DPO(policy=spec, reference=reference, beta=0.1)
    module.configure_model()
    if reference == "precomputed":
        module.ref_cache = __import__("lit_align.objectives.logps", fromlist=["x"]).precompute_reference(
            module, dm.ordered_dataloaders(), None
        )
    module.policy.eval()  # no dropout: the three modes must agree exactly
    with torch.no_grad():
        logps, _ = module(batch)
        ref = batch_reference_logps(module, batch, "train")
        return module.loss_fn(*logps.chunk(2), *ref.chunk(2)).losses.mean(), logps, ref


def test_reference_modes_give_the_same_first_step_loss():
    dm = _data()
    batch = next(iter(dm.splits.loader("train", shuffle=False)))
    full = ModelSpec(name_or_path=TINY)
    lora = ModelSpec(name_or_path=TINY, finetune="lora", lora_r=4)
    copy_loss, logps, ref = _first_step_loss(full, "copy", batch, dm)
    adapter_loss, _, _ = _first_step_loss(lora, "adapter", batch, dm)
    pre_loss, _, pre_ref = _first_step_loss(full, "precomputed", batch, dm)
    # before any update the policy equals its reference: every log-ratio is 0 and the loss is log 2
    assert torch.allclose(logps, ref)
    assert copy_loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    assert adapter_loss.item() == pytest.approx(copy_loss.item(), abs=1e-6)
    assert pre_loss.item() == pytest.approx(copy_loss.item(), abs=1e-6)
    assert torch.allclose(pre_ref, ref, atol=1e-5)


@pytest.mark.parametrize("loss_type", ["sigmoid", "robust", "ipo", "hinge"])
def test_dpo_variants_train_and_log_trl_metric_names(tmp_path, loss_type):
    module = DPO(
        policy=ModelSpec(name_or_path=TINY),
        loss_type=loss_type,
        label_smoothing=0.1 if loss_type == "robust" else 0.0,
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-4),
    )
    module.configure_model()
    before = {n: p.detach().clone() for n, p in module.policy.named_parameters()}
    ref_before = {n: p.detach().clone() for n, p in module.reference.named_parameters()}
    trainer = _trainer(tmp_path, 3)
    trainer.fit(module, _data())
    assert any(not p.equal(before[n]) for n, p in module.policy.named_parameters())
    assert all(p.equal(ref_before[n]) for n, p in module.reference.named_parameters())
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    names = {
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "kl",
        "lengths/chosen",
        "lengths/rejected",
        "loss",
    }
    for stage in ("train", "val"):
        assert {f"{stage}/{n}" for n in names} <= set(rows[0]), sorted(rows[0])
    losses = [float(r["train/loss"]) for r in rows if r["train/loss"]]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_checkpoint_leaves_out_the_frozen_reference(tmp_path):
    module = DPO(policy=ModelSpec(name_or_path=TINY), reference="copy")
    module.configure_model()
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and not any(k.startswith("reference.") for k in checkpoint["state_dict"])


def test_reference_mode_must_fit_the_finetune_mode():
    with pytest.raises(LitAlignError, match="'adapter' needs policy.finetune lora or qlora"):
        DPO(policy=ModelSpec(name_or_path=TINY), reference="adapter")
    with pytest.raises(LitAlignError, match="use 'adapter' under LoRA"):
        DPO(policy=ModelSpec(name_or_path=TINY, finetune="lora"), reference="copy")


def test_row_counts_reach_the_csv_log(tmp_path):
    from tests.helpers import write_jsonl

    long = "x" * 80
    rows = [{"prompt": "a", "chosen": long, "rejected": long + "y"}, {"prompt": "b", "chosen": "1", "rejected": "2"}]
    dm = PairwiseDataModule(
        tokenizer=TINY,
        source=DataSource(path=str(write_jsonl(tmp_path / "p.jsonl", rows)), val_split=None),
        max_length=32,
        batch_size=2,
    )
    trainer = _trainer(tmp_path, 1)
    with pytest.warns(UserWarning, match="1 truncated"):
        trainer.fit(DPO(policy=ModelSpec(name_or_path=TINY)), dm)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("data/train/rows")]
    assert float(logged[0]["data/train/rows"]) == 2 and float(logged[0]["data/train/truncated"]) == 1
