"""SimPO and ORPO: pairwise objectives without a reference model (one forward pass per batch)."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.losses.preference import PreferenceLossOutput
from lit_align.losses.reference_free import orpo_loss, simpo_loss
from lit_align.metrics import log_metrics, preference_metrics
from lit_align.modeling import ModelSpec, load_policy
from lit_align.objectives.logps import policy_logps
from lit_align.objectives.optim import configure_optimizers
from lit_align.types import PairwiseBatch


class _ReferenceFree(LightningModule):
    """Shared wiring of SimPO and ORPO; subclasses only choose the loss on mean log-probs."""

    def __init__(self, policy: ModelSpec, optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.policy: torch.nn.Module | None = None

    def configure_model(self) -> None:
        """Build the policy (idempotent)."""
        if self.policy is None:
            device = self.trainer.strategy.root_device if self._trainer is not None else None
            self.policy = load_policy(self.policy_spec, device=device)

    def forward(self, batch: PairwiseBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Return policy log-probs and completion lengths of every stacked row, each of shape (2B,)."""
        return policy_logps(self.policy, batch)

    def _loss(self, chosen_mean: torch.Tensor, rejected_mean: torch.Tensor) -> PreferenceLossOutput:
        raise NotImplementedError

    def _shared_step(self, batch: PairwiseBatch, stage: str) -> torch.Tensor:
        logps, lengths = self(batch)
        mean_logps = logps / lengths.clamp(min=1)  # (2B,) per-token means, as both papers define them
        out = self._loss(*mean_logps.chunk(2))
        loss = out.losses.mean()
        pc, pr = logps.chunk(2)
        metrics = {
            "loss": loss,
            **preference_metrics(out.chosen_rewards, out.rejected_rewards, pc, pr, *lengths.chunk(2)),
        }
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
        """Optimizer over trainable parameters."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)


class SimPO(_ReferenceFree):
    """Simple Preference Optimisation: length-normalised reward with a target margin, no reference."""

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        beta: float = 2.0,
        gamma: float = 0.5,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA).
            beta: Reward scale.
            gamma: Target reward margin.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        super().__init__(policy, optimizer, lr_scheduler)

    def _loss(self, chosen_mean: torch.Tensor, rejected_mean: torch.Tensor) -> PreferenceLossOutput:
        return simpo_loss(chosen_mean, rejected_mean, beta=self.hparams.beta, gamma=self.hparams.gamma)


class ORPO(_ReferenceFree):
    """Odds Ratio Preference Optimisation: NLL on chosen plus an odds-ratio term, no reference."""

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        lam: float = 0.1,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA).
            lam: Weight of the odds-ratio term (the paper's lambda; TRL's ``beta``).
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        super().__init__(policy, optimizer, lr_scheduler)

    def _loss(self, chosen_mean: torch.Tensor, rejected_mean: torch.Tensor) -> PreferenceLossOutput:
        return orpo_loss(chosen_mean, rejected_mean, lam=self.hparams.lam)
