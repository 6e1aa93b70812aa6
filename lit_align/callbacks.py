"""Callbacks that recipes add to the Trainer."""

from __future__ import annotations

from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lit_align.modeling import load_tokenizer, save_hf


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
        """Save once, from global rank 0."""
        if not trainer.is_global_zero or trainer.interrupted:
            return
        spec = pl_module.policy_spec
        out = Path(self.dirpath or Path(trainer.default_root_dir) / "hf_model")
        tokenizer = load_tokenizer(spec.name_or_path, trust_remote_code=spec.trust_remote_code)
        head = getattr(pl_module, "head", "causal_lm")
        save_hf(pl_module.policy, tokenizer, out, spec=spec, merge_adapter=self.merge_adapter, head=head)
        rank_zero_info(f"saved the policy in Hugging Face format to {out}")
