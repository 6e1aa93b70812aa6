"""A run stopped mid-epoch and resumed from its checkpoint ends with the same weights as an uninterrupted run."""

import pytest
import torch
from lightning import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_align.data import DataSource, PromptDataModule, SFTDataModule
from lit_align.objectives import GRPO, SFT
from lit_align.rewards import RewardSpec
from lit_align.roles.models import ModelSpec
from lit_align.rollout import SamplingConfig
from lit_align.runtime.callbacks import RNGState


def _sft():
    module = SFT(policy=ModelSpec(name_or_path="lit-align/tiny-sft"), optimizer=lambda p: torch.optim.AdamW(p, 1e-3))
    return module, SFTDataModule(source=DataSource(num_rows=64, num_val_rows=4), batch_size=4)


def _grpo():
    # A reward that differs between samples of a prompt, so every update depends on what was sampled.
    varied = [RewardSpec("lit_align.rewards.length_penalty", kwargs={"max_chars": 1})]
    module = GRPO(
        rewards=varied,
        completions_per_prompt=4,
        sampling=SamplingConfig(max_new_tokens=6, temperature=1.5),
        log_samples_every_n_steps=0,
        optimizer=lambda p: torch.optim.AdamW(p, 1e-3),
    )
    return module, PromptDataModule(source=DataSource(num_rows=64, num_val_rows=4), batch_size=2)


def _fit(tmp_path, build, steps, ckpt_path=None, seed=0, save_every=None, callbacks=()):
    seed_everything(seed)
    module, data = build()
    callbacks = [RNGState(), *callbacks]
    if save_every:  # checkpoints written during training, as a real run (or a pre-emption) writes them
        callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=save_every, save_top_k=-1))
    trainer = Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=bool(save_every),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return trainer, module


@pytest.mark.parametrize("build", [_sft, _grpo], ids=["sft", "grpo"])
def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path, build):
    _, straight = _fit(tmp_path / "a", build, 6)
    _fit(tmp_path / "b", build, 4, save_every=3)  # the run dies after step 4; its last checkpoint is at step 3
    ckpt = next((tmp_path / "b" / "ckpt").glob("*step=3*.ckpt"))  # 3 of 16 (SFT) or 32 (GRPO) batches: mid-epoch
    # A different seed in the new process: everything that matters must come from the checkpoint.
    _, resumed = _fit(tmp_path / "c", build, 6, ckpt_path=ckpt, seed=123)
    start, _ = build()
    start.configure_model()
    pairs = zip(straight.policy.parameters(), start.policy.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)  # training moved the weights
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
