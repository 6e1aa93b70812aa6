import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.callbacks import SaveHuggingFace
from lit_align.data import DataSource, PairwiseDataModule
from lit_align.data.arithmetic import make_rows
from lit_align.modeling import ModelSpec
from lit_align.objectives import RewardModel
from lit_align.rewards.model import RewardModelScorer

TINY = "lit-align/tiny-sft"


def test_reward_model_trains_logs_and_its_export_scores_pairs(tmp_path):
    module = RewardModel(policy=ModelSpec(name_or_path=TINY), optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))
    data = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=32, num_val_rows=8), batch_size=8)
    out = tmp_path / "rm"
    trainer = Trainer(
        max_steps=4,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=4,
        num_sanity_val_steps=0,
        callbacks=[SaveHuggingFace(dirpath=str(out))],
    )
    trainer.fit(module, data)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"train/loss", "train/accuracy", "train/margin", "val/accuracy", "val/margin"} <= set(rows[0])
    # the exported folder scores (prompt, completion) exactly like the trained module
    scorer = RewardModelScorer(str(out))
    pair = make_rows("pairwise", "validation", 8)[0]
    scores = scorer([pair["prompt"], pair["prompt"]], [pair["chosen"], pair["rejected"]])
    row = data.rows["val"][0]
    module.policy.eval()
    with torch.no_grad():
        direct = [
            module(ids, torch.ones_like(ids)).item()
            for ids in (torch.tensor([row["prompt_ids"] + row[k]]) for k in ("chosen_ids", "rejected_ids"))
        ]
    assert scores == pytest.approx(direct, abs=1e-5)
