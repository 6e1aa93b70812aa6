import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import DataSource, SFTDataModule
from lit_align.objectives import SFT
from lit_align.roles.models import ModelSpec


def _fit(tmp_path, spec: ModelSpec, steps: int = 3):
    model = SFT(policy=spec, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))
    data = SFTDataModule(tokenizer=spec.name_or_path, source=DataSource(num_rows=64, num_val_rows=8), batch_size=8)
    trainer = Trainer(
        max_steps=steps,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=steps,
        num_sanity_val_steps=0,
    )
    model.configure_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.fit(model, data)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return model, before, rows, trainer


def test_sft_steps_move_weights_and_log_metrics(tmp_path):
    model, before, rows, trainer = _fit(tmp_path, ModelSpec(name_or_path="lit-align/tiny-sft"))
    assert any(not p.equal(before[n]) for n, p in model.named_parameters())
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(r.get("val/loss") for r in rows) and any(r.get("val/token_accuracy") for r in rows)
    seen = [float(r["train/tokens_seen"]) for r in rows if r.get("train/tokens_seen")]
    assert seen == sorted(seen) and seen[0] > 0  # cumulative
    assert model.tokens_seen.item() == seen[-1]


def test_sft_under_lora_moves_only_adapters(tmp_path):
    spec = ModelSpec(name_or_path="lit-align/tiny-sft", finetune="lora", lora_r=4)
    model, before, _, _ = _fit(tmp_path, spec)
    moved = {n for n, p in model.named_parameters() if not p.equal(before[n])}
    assert moved and all("lora_" in n for n in moved)


def test_validation_means_are_per_token_not_per_row(tmp_path):
    """Two validation batches with different token counts: val/token_accuracy is hits / tokens over both."""
    from lit_align.metrics import token_accuracy
    from lit_align.ops.logprobs import shift_labels
    from tests.helpers import write_jsonl

    rows = [{"prompt": "1 + 1 =", "completion": " 2"}, {"prompt": "2 + 2 =", "completion": " 4 because two and two"}]
    rows += [{"prompt": "q", "completion": " a long answer that has many more tokens than the others"}]
    path = write_jsonl(tmp_path / "val.jsonl", rows)
    model = SFT(policy=ModelSpec(name_or_path="lit-align/tiny-sft"))
    data = SFTDataModule(source=DataSource(path=str(path)), batch_size=2)
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    data.setup("validate")
    data.rows["val"] = data.rows["train"]  # validate on the file's rows: batches of 2 and 1 rows
    model.configure_model()
    hits = total = 0
    with torch.no_grad():
        for batch in data.splits.loader("val", shuffle=False):
            targets, mask = shift_labels(batch["labels"])
            accuracy = token_accuracy(model(batch["input_ids"], batch["attention_mask"]).argmax(-1), targets, mask)
            hits, total = hits + accuracy * mask.sum(), total + mask.sum()
    logged = trainer.validate(model, data.val_dataloader(), verbose=False)[0]["val/token_accuracy"]
    assert logged == pytest.approx((hits / total).item(), abs=1e-6)
