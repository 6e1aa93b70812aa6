"""KTO: Kahneman-Tversky Optimisation on unpaired completions labelled desirable or undesirable."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.domains import NonNegativeFloat, PositiveFloat, check_args
from lit_align.losses.kto import kto_loss, kto_reference_point
from lit_align.losses.sft import sequence_nll_loss
from lit_align.metrics import kto_metrics, log_metrics
from lit_align.objectives.optim import configure_optimizers, role_device
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.reference import Reference, ReferenceKind, ReferenceSpec, WithReference
from lit_align.roles.scoring import stacked_logps
from lit_align.runtime.distributed import sum_over_ranks, token_normalizer
from lit_align.types import BinaryBatch


class KTO(WithReference, LightningModule):
    """KTO with the paper's batch KL reference point z0, reduced over every process's mismatched pairs.

    Logs ``{stage}/loss``, ``kl`` (the reference point z0), ``rewards/chosen`` and ``rewards/rejected`` (mean
    implicit reward of the batch's desirable and undesirable rows; 0 when the batch has none),
    ``rewards/margins``, ``logps/chosen``, ``logps/rejected``, ``fraction_desirable`` and ``nll`` (with
    ``sft_weight``).
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        beta: PositiveFloat = 0.1,
        desirable_weight: PositiveFloat = 1.0,
        undesirable_weight: PositiveFloat = 1.0,
        sft_weight: NonNegativeFloat = 0.0,
        reference: ReferenceSpec | ReferenceKind = "auto",
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
            sft_weight: Weight of an added NLL term on the desirable completions (token mean over the batch's
                desirable completion tokens, like DPO's ``sft_weight``); 0 is the paper's KTO. Not in the KTO paper
                or TRL: it keeps the desirable answers' likelihood from falling, as RPO does for DPO.
            reference: Where reference log-probs come from (:class:`~lit_align.roles.reference.ReferenceSpec`).
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        check_args(KTO.__init__, locals(), "KTO")
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.reference = Reference(reference, finetune=policy.finetune)
        self.policy: torch.nn.Module | None = None

    def configure_model(self) -> None:
        """Build the policy and the reference (idempotent)."""
        if self.policy is not None:
            return
        self.policy = load_policy(self.policy_spec, device=role_device(self))
        self.reference.build(self.policy, role_device(self))

    def forward(self, batch: BinaryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Return policy log-probs and completion lengths of every stacked row, each of shape (2B,)."""
        return stacked_logps(self.policy, batch)

    def _shared_step(self, batch: BinaryBatch, stage: str) -> torch.Tensor:
        logps, lengths = self(batch)  # (2B,): B completions, then the same prompts with mismatched completions
        ref = self.reference.logps(batch, stage)
        policy_y, policy_kl = logps.chunk(2)
        ref_y, ref_kl = ref.chunk(2)
        z0 = kto_reference_point(policy_kl, ref_kl, sum_over_processes=sum_over_ranks)  # the global batch's
        hp = self.hparams
        out = kto_loss(
            policy_y,
            ref_y,
            z0,
            batch["desirable"],
            beta=hp.beta,
            desirable_weight=hp.desirable_weight,
            undesirable_weight=hp.undesirable_weight,
        )
        loss = out.losses.mean()
        metrics = kto_metrics(out.rewards, policy_y, batch["desirable"], out.kl)
        if hp.sft_weight:
            desirable_lengths = lengths.chunk(2)[0][batch["desirable"]]
            nll = sequence_nll_loss(
                policy_y[batch["desirable"]], desirable_lengths, token_normalizer(desirable_lengths.sum())
            )
            loss = loss + hp.sft_weight * nll
            metrics["nll"] = nll.detach()
        metrics["loss"] = loss
        log_metrics(self, metrics, stage, batch_size=len(policy_y))
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
