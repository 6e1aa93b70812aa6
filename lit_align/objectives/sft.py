"""SFT: supervised fine-tuning on completion tokens."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.losses.sft import sft_loss
from lit_align.metrics import log_metrics, token_accuracy
from lit_align.objectives.optim import configure_optimizers, role_device
from lit_align.ops.logprobs import shift_labels
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.scoring import token_scores
from lit_align.runtime.distributed import sum_over_ranks, token_normalizer
from lit_align.types import SFTBatch


class SFT(LightningModule):
    """Supervised fine-tuning: maximise the likelihood of the labelled tokens.

    Logs ``train/loss``, ``val/loss``, ``{stage}/token_accuracy`` and ``train/tokens_seen`` (non-padding input
    tokens over all processes since the start of training, restored on resume).
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA).
            optimizer: Optimizer class and arguments, e.g. ``{class_path: torch.optim.AdamW, init_args: {lr: 1e-5}}``.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        # Under LightningCLI, hparams hold the config as given (dicts); keep the parsed objects here.
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.policy: torch.nn.Module | None = None
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.long))

    def configure_model(self) -> None:
        """Build the policy once (idempotent, so strategies may call it again)."""
        if self.policy is None:
            self.policy = load_policy(self.policy_spec, device=role_device(self))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Return next-token logits of shape (B, T, V) (training scores labelled positions only, without them)."""
        return self.policy(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def _shared_step(self, batch: SFTBatch, stage: str) -> torch.Tensor:
        targets, loss_mask = shift_labels(batch["labels"])
        scores = token_scores(
            self.policy, batch["input_ids"], batch["attention_mask"], targets, loss_mask, with_stats=True
        )
        out = sft_loss(scores.logps, loss_mask, token_normalizer(loss_mask.sum()))
        metrics = {"loss": out.loss, "token_accuracy": token_accuracy(scores.predicted, targets, loss_mask)}
        # Weighted by counted tokens, so epoch means (val/loss, val/token_accuracy) are per token, not per row.
        log_metrics(self, metrics, stage, batch_size=max(int(loss_mask.sum()), 1))
        return out.loss

    def training_step(self, batch: SFTBatch, batch_idx: int) -> torch.Tensor:
        """One optimisation step on a batch."""
        loss = self._shared_step(batch, "train")
        self.tokens_seen += sum_over_ranks(batch["attention_mask"].sum()).long()
        self.log("train/tokens_seen", self.tokens_seen.float(), batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: SFTBatch, batch_idx: int) -> None:
        """Log validation loss and token accuracy."""
        self._shared_step(batch, "val")

    def test_step(self, batch: SFTBatch, batch_idx: int) -> None:
        """Log the same metrics on the test split (``lit-align test``)."""
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        """Optimizer over trainable parameters (LoRA adapters only under LoRA/QLoRA)."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)
