"""Callbacks that recipes add to the Trainer."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lit_align.roles.models import save_hf
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.runtime.preemption import was_preempted
from lit_align.runtime.sharding import unsharded_copy


class SaveHuggingFace(Callback):
    """At the end of ``fit``, save the trained policy and its tokenizer as a Hugging Face folder.

    Args:
        dirpath: Output folder; defaults to ``<default_root_dir>/hf_model``.
        merge_adapter: Under LoRA/QLoRA, merge the adapter into the base weights (True) or save the adapter alone.

    """

    def __init__(self, dirpath: str | None = None, merge_adapter: bool = True) -> None:
        """See the class docstring."""
        self.dirpath, self.merge_adapter = dirpath, merge_adapter

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save once, from global rank 0 (every rank helps gather a sharded policy first); not after a pre-emption."""
        if trainer.interrupted or was_preempted(trainer):  # a pre-empted run is not finished: it resumes later
            return
        spec = pl_module.policy_spec
        head = getattr(pl_module, "head", "causal_lm")
        policy = unsharded_copy(pl_module.policy, spec, head)  # a collective when the policy is sharded
        if not trainer.is_global_zero:
            return
        out = Path(self.dirpath or Path(trainer.default_root_dir) / "hf_model")
        tokenizer = load_tokenizer(spec.name_or_path, trust_remote_code=spec.trust_remote_code)
        trained_with = getattr(trainer.datamodule, "tokenizer", None)
        if trained_with is not None and trained_with.chat_template:  # e.g. a chat_template override in the data
            tokenizer.chat_template = trained_with.chat_template
        save_hf(policy, tokenizer, out, spec=spec, merge_adapter=self.merge_adapter, head=head)
        rank_zero_info(f"saved the policy in Hugging Face format to {out}")


class RNGState(Callback):
    """Keep the random number generators' states in every checkpoint and restore them on resume.

    With the data loaders' own state (see ``lit_align.data.rows.make_loader``), a resumed run draws the same
    random numbers (sampling in online objectives, dropout) as the run that was interrupted. The CLI adds it to every
    run.
    """

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        """Store the states of Python's, NumPy's and torch's generators (CPU and CUDA) of every process.

        Every rank calls this hook; the checkpoint is written by rank 0, so the states of all ranks are gathered
        into it (each rank samples with its own generator in the online objectives).
        """
        states = collect_rng_states()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)
            checkpoint["rng_states"] = gathered
        else:
            checkpoint["rng_states"] = [states]

    def __init__(self) -> None:
        """See the class docstring."""
        self.pending: dict | None = None

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        """Keep this rank's saved states until the first batch (setting up the data loaders draws numbers)."""
        saved = checkpoint.get("rng_states")
        if isinstance(saved, dict):  # checkpoints written before states were kept per rank
            saved = [saved]
        if not saved:
            return
        if len(saved) != trainer.world_size:
            rank_zero_warn(
                f"RNGState: the checkpoint holds random states of {len(saved)} processes, this run has "
                f"{trainer.world_size}; random draws after the resume will differ from an uninterrupted run"
            )
        self.pending = saved[trainer.global_rank % len(saved)]

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int) -> None:
        """Put the generators back where the checkpoint left them, right before the first batch after a resume."""
        if self.pending is not None:
            set_rng_states(self.pending)
            self.pending = None


def collect_rng_states() -> dict:
    """States of Python's, NumPy's and torch's generators as tensors and plain lists (loadable weights-only)."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def set_rng_states(states: dict) -> None:
    """Restore what :func:`collect_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
