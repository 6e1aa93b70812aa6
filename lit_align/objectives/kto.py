"""KTO: Kahneman-Tversky Optimisation on unpaired completions labelled desirable or undesirable."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.losses.kto import kto_loss
from lit_align.metrics import log_metrics
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
from lit_align.ops.logprobs import masked_mean
from lit_align.types import BinaryBatch


class KTO(LightningModule):
    """KTO with the paper's batch KL reference point; reference modes as in :class:`~lit_align.objectives.DPO`.

    Logs ``{stage}/loss``, ``kl`` (the reference point z0), ``rewards/chosen`` and ``rewards/rejected`` (mean
    implicit reward of the batch's desirable and undesirable rows; 0 when the batch has none),
    ``rewards/margins``, ``logps/chosen``, ``logps/rejected`` and ``fraction_desirable``.
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        beta: float = 0.1,
        desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0,
        reference: Literal["auto", "copy", "adapter", "precomputed"] = "auto",
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA); the reference starts as this model.
            beta: Inverse temperature.
            desirable_weight: lambda_D; raise it when desirable rows are rarer (the paper keeps
                lambda_D n_D / (lambda_U n_U) in [1, 4/3]).
            undesirable_weight: lambda_U.
            reference: ``auto``, ``copy``, ``adapter`` or ``precomputed``.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
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
        """In ``precomputed`` mode, score every row (and its mismatched row) with the initial policy once."""
        if self.reference_mode is ReferenceMode.PRECOMPUTED and not self.ref_cache:
            self.ref_cache = precompute_reference(self, self.trainer.datamodule.ordered_dataloaders(), None)

    def forward(self, batch: BinaryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Return policy log-probs and completion lengths of every stacked row, each of shape (2B,)."""
        return policy_logps(self.policy, batch)

    def _shared_step(self, batch: BinaryBatch, stage: str) -> torch.Tensor:
        logps, _ = self(batch)
        ref = batch_reference_logps(self, batch, stage)
        policy_y, policy_kl = logps.chunk(2)
        ref_y, ref_kl = ref.chunk(2)
        desirable = batch["desirable"]
        hp = self.hparams
        out = kto_loss(
            policy_y,
            ref_y,
            policy_kl,
            ref_kl,
            desirable,
            beta=hp.beta,
            desirable_weight=hp.desirable_weight,
            undesirable_weight=hp.undesirable_weight,
        )
        loss = out.losses.mean()
        chosen, rejected = masked_mean(out.rewards, desirable), masked_mean(out.rewards, ~desirable)
        metrics = {
            "loss": loss,
            "kl": out.kl,
            "rewards/chosen": chosen,
            "rewards/rejected": rejected,
            "rewards/margins": chosen - rejected,
            "logps/chosen": masked_mean(policy_y.detach(), desirable),
            "logps/rejected": masked_mean(policy_y.detach(), ~desirable),
            "fraction_desirable": desirable.float().mean(),
        }
        log_metrics(self, metrics, stage, batch_size=len(desirable))
        return loss

    def training_step(self, batch: BinaryBatch, batch_idx: int) -> torch.Tensor:
        """One optimisation step."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch: BinaryBatch, batch_idx: int) -> None:
        """Log validation loss and rewards per label."""
        self._shared_step(batch, "val")

    def test_step(self, batch: BinaryBatch, batch_idx: int) -> None:
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
