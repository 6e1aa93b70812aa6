"""``WinRate``: val/win_rate of the policy against its start, equal to ``evaluate --reference`` on the same prompts."""

import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.commands.evaluate import evaluate
from lit_align.data import DataSource, PairwiseDataModule
from lit_align.objectives import DPO
from lit_align.runtime.callbacks import SaveHuggingFace
from lit_align.runtime.win_rate import WinRate


def _fit(tmp_path, module, callback, steps=4, ckpt_path=None, val_every=2):
    dm = PairwiseDataModule(source=DataSource(num_rows=64, num_val_rows=8), batch_size=8, max_length=64)
    trainer = Trainer(
        max_steps=steps, logger=CSVLogger(tmp_path, name="logs"), log_every_n_steps=1, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, val_check_interval=val_every, num_sanity_val_steps=0,
        callbacks=[callback, SaveHuggingFace(dirpath=str(tmp_path / "hf_model"))], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    with open(next(tmp_path.glob("logs/version_*/metrics.csv"))) as f:
        return [r for r in csv.DictReader(f) if r.get("val/win_rate")]


def test_unchanged_weights_tie_everywhere(tmp_path):
    schedule = lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.0)  # noqa: E731
    rows = _fit(tmp_path, DPO(lr_scheduler=schedule), WinRate(num_prompts=16, max_new_tokens=8))
    assert [(float(r["val/win_rate"]), float(r["val/tie_rate"])) for r in rows] == [(0.5, 1.0), (0.5, 1.0)]


def test_the_logged_win_rate_is_what_evaluate_measures_against_the_start(tmp_path, capsys):
    torch.manual_seed(0)
    optimizer = lambda params: torch.optim.AdamW(params, lr=2e-3)  # noqa: E731
    rows = _fit(tmp_path, DPO(optimizer=optimizer), WinRate(num_prompts=32, max_new_tokens=8), steps=6, val_every=3)
    logged = float(rows[-1]["val/win_rate"])
    measured = evaluate(
        model=str(tmp_path / "hf_model"), reference="lit-align/tiny-sft",
        source=DataSource(split="validation", val_split=None, num_rows=8),  # the data module holds 8
    )  # fmt: skip
    assert logged == pytest.approx(measured["win_rate"], abs=1e-6)
    assert measured["tie_rate"] < 1.0  # the policy did change its answers


def test_the_start_scores_survive_a_checkpoint():
    callback = WinRate()
    callback.start_scores = [1.0, 0.0, None]
    restored = WinRate()
    restored.load_state_dict(callback.state_dict())
    assert restored.start_scores == [1.0, 0.0, None]


def test_a_scorer_that_scores_nothing_warns_and_logs_no_win_rate(tmp_path):
    callback = WinRate(scorer="tests.commands.scorers:never", num_prompts=4, max_new_tokens=4)
    with pytest.warns(UserWarning, match="WinRate: the scorer 'tests.commands.scorers:never' scored none of 4"):
        rows = _fit(tmp_path, DPO(), callback, steps=2)
    assert rows == [] and callback.start_scores is None
