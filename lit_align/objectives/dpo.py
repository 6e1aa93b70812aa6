"""DPO and its reference-based variants (IPO, hinge, conservative and robust DPO)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import partial
from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.distributed import token_normalizer
from lit_align.losses.preference import PreferenceLossOutput, dpo_loss, hinge_loss, ipo_loss, robust_dpo_loss
from lit_align.losses.sft import sequence_nll_loss
from lit_align.metrics import log_metrics, preference_metrics, sequence_kl
from lit_align.modeling import Finetune, ModelSpec
from lit_align.objectives.logps import (
    ReferenceMode,
    batch_reference_logps,
    checkpoint_without_reference,
    load_roles,
    policy_logps,
    precompute_reference,
)
from lit_align.objectives.optim import configure_optimizers
from lit_align.types import PairwiseBatch


class DPOVariant(StrEnum):
    """Loss variants of :class:`DPO`; ``smoothing`` tells whether ``label_smoothing`` applies."""

    SIGMOID = "sigmoid"
    ROBUST = "robust"
    IPO = "ipo"
    HINGE = "hinge"

    @property
    def smoothing(self) -> bool:
        """True when the variant reads ``label_smoothing`` (cDPO / robust DPO)."""
        return self in (DPOVariant.SIGMOID, DPOVariant.ROBUST)

    def loss_fn(self, beta: float, label_smoothing: float) -> Callable[..., PreferenceLossOutput]:
        """The pure loss function with its hyperparameters bound."""
        fn = {"sigmoid": dpo_loss, "robust": robust_dpo_loss, "ipo": ipo_loss, "hinge": hinge_loss}[self.value]
        return partial(fn, beta=beta, label_smoothing=label_smoothing) if self.smoothing else partial(fn, beta=beta)


class DPO(LightningModule):
    """Direct Preference Optimisation on pairs, with a choice of loss variant and reference mode.

    Logs ``{train,val}/loss``, ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
    ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``, ``kl`` and ``lengths/{chosen,rejected}``.
    The frozen reference copy and the precomputed cache never enter the HF export; the cache is kept in
    Lightning checkpoints so a resumed run does not recompute it from trained weights.
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        loss_type: Literal["sigmoid", "robust", "ipo", "hinge"] = "sigmoid",
        beta: float = 0.1,
        label_smoothing: float = 0.0,
        reference: Literal["auto", "copy", "adapter", "precomputed"] = "auto",
        sft_weight: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA); the reference starts as this model.
            loss_type: ``sigmoid`` (DPO; cDPO with label_smoothing), ``robust`` (robust DPO), ``ipo``, ``hinge``.
            beta: Inverse temperature of the implicit reward (IPO: regularisation strength).
            label_smoothing: Assumed preference-flip rate for ``sigmoid`` and ``robust``.
            reference: ``auto``, ``copy``, ``adapter`` or ``precomputed`` (see :class:`ReferenceMode`).
            sft_weight: Weight of an added NLL term on the chosen completions, per token (RPO, Pang et al., 2024;
                arXiv:2404.19733); 0 is plain DPO. It keeps the chosen likelihood from falling.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.loss_fn = DPOVariant(loss_type).loss_fn(beta, label_smoothing)
        self.reference_mode = ReferenceMode(reference).resolve(Finetune(policy.finetune))
        self.policy: torch.nn.Module | None = None
        self.reference: torch.nn.Module | None = None
        self.ref_cache: dict[str, torch.Tensor] = {}
        self.strict_loading = False  # checkpoints leave out the frozen reference

    def configure_model(self) -> None:
        """Build the policy and, in ``copy`` mode, its frozen reference (idempotent)."""
        if self.policy is not None:
            return
        device = self.trainer.strategy.root_device if self._trainer is not None else None
        self.policy, self.reference = load_roles(self.policy_spec, self.reference_mode, device)

    def on_fit_start(self) -> None:
        """In ``precomputed`` mode, score every row with the initial policy once."""
        if self.reference_mode is ReferenceMode.PRECOMPUTED and not self.ref_cache:
            self.ref_cache = precompute_reference(self, self.trainer.datamodule.ordered_dataloaders(), None)

    def forward(self, batch: PairwiseBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Return policy log-probs and completion lengths of every stacked row, each of shape (2B,)."""
        return policy_logps(self.policy, batch)

    def _shared_step(self, batch: PairwiseBatch, stage: str) -> torch.Tensor:
        logps, lengths = self(batch)
        ref_logps = batch_reference_logps(self, batch, stage)
        pc, pr = logps.chunk(2)
        rc, rr = ref_logps.chunk(2)
        out = self.loss_fn(pc, pr, rc, rr)
        loss = out.losses.mean()
        if self.hparams.sft_weight:
            chosen_lengths = lengths.chunk(2)[0]
            nll = sequence_nll_loss(pc, chosen_lengths, token_normalizer(chosen_lengths.sum()))
            loss = loss + self.hparams.sft_weight * nll
        metrics = {
            "loss": loss,
            **preference_metrics(out.chosen_rewards, out.rejected_rewards, pc, pr, *lengths.chunk(2)),
        }
        metrics["kl"] = sequence_kl(logps, ref_logps)
        log_metrics(self, metrics, stage, batch_size=len(pc))
        return loss

    def training_step(self, batch: PairwiseBatch, batch_idx: int) -> torch.Tensor:
        """One optimisation step on a batch of pairs."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch: PairwiseBatch, batch_idx: int) -> None:
        """Log validation loss and preference metrics."""
        self._shared_step(batch, "val")

    def test_step(self, batch: PairwiseBatch, batch_idx: int) -> None:
        """Log the same metrics on the test split (``lit-align test``)."""
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        """Optimizer over trainable parameters (never the frozen reference)."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the frozen reference copy; keep the precomputed cache."""
        checkpoint_without_reference(checkpoint, self.ref_cache)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the precomputed cache."""
        self.ref_cache = checkpoint.get("ref_cache", {})
