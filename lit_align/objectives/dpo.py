"""DPO and the pairwise preference family (robust, IPO, hinge, RPO, SimPO, CPO, ORPO), one spec per method."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.domains import FlipRate, NonNegativeFloat, PositiveFloat, check_args
from lit_align.losses.specs import LossType, NLLNormalization, preference_loss_spec
from lit_align.metrics import log_metrics, preference_metrics, sequence_kl
from lit_align.objectives.names import renamed
from lit_align.objectives.optim import configure_optimizers, role_device
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.reference import Reference, ReferenceKind, ReferenceSpec, WithReference
from lit_align.roles.scoring import stacked_logps
from lit_align.runtime.distributed import token_normalizer
from lit_align.types import PairwiseBatch


class DPO(WithReference, LightningModule):
    """Pairwise preference optimisation: DPO and every variant in :data:`lit_align.losses.specs.PREFERENCE_LOSSES`.

    ``loss_type`` picks a spec, which knows whether it needs a reference, whether it length-normalises, and its
    NLL term; the values below override the spec's defaults (None keeps them). Logs ``{train,val}/loss``,
    ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``, ``logps/chosen``,
    ``logps/rejected``, ``lengths/{chosen,rejected}``, ``nll`` (with an NLL term) and ``kl`` (with a reference).
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        loss_type: LossType = "sigmoid",
        beta: PositiveFloat | None = None,
        label_smoothing: FlipRate | None = None,
        simpo_gamma: NonNegativeFloat | None = None,
        sft_weight: NonNegativeFloat | None = None,
        nll_normalization: NLLNormalization | None = None,
        length_normalized: bool | None = None,
        reference: ReferenceSpec | ReferenceKind = "auto",
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA); the reference starts as this model.
            loss_type: ``sigmoid`` (DPO; cDPO with label_smoothing), ``robust``, ``ipo``, ``hinge``, ``rpo``
                (DPO + NLL), ``simpo``, ``cpo`` (summed log-probs + NLL), ``cpo_simpo`` (SimPO's form + NLL) or
                ``orpo``.
            beta: Inverse temperature of the implicit reward (IPO: regularisation; SimPO: reward scale; ORPO: weight
                of the odds-ratio term). Default: the spec's (0.1; SimPO/CPO-SimPO 2.0).
            label_smoothing: Assumed preference-flip rate (``sigmoid``, ``rpo``: default 0; ``robust``: 0.1).
            simpo_gamma: Target reward margin of ``simpo`` and ``cpo_simpo`` (default 0.5; ``cpo`` 0).
            sft_weight: Weight of an NLL term on the chosen completions (RPO, arXiv:2404.19733); default the spec's
                (1 for ``rpo``, ``cpo``, ``cpo_simpo``, ``orpo``; 0 otherwise). It keeps the chosen likelihood
                from falling.
            nll_normalization: ``token`` (mean over the batch's chosen tokens, as TRL and the ORPO code) or
                ``sequence`` (mean of per-sequence means, the RPO paper's form). Default ``token``.
            length_normalized: Divide log-probs by completion length before the loss; default the spec's (True for
                ``ipo``, ``simpo``, ``cpo_simpo``, ``orpo``). ``ipo`` with False is the summed form.
            reference: Where reference log-probs come from (:class:`~lit_align.roles.reference.ReferenceSpec`, or
                just its kind); reference-free losses take none.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        check_args(DPO.__init__, locals(), "DPO")
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "lam", "gamma"])  # the aliases' old names
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.loss = preference_loss_spec(
            loss_type,
            beta=beta,
            label_smoothing=label_smoothing,
            simpo_gamma=simpo_gamma,
            sft_weight=sft_weight,
            nll_normalization=nll_normalization,
            length_normalized=length_normalized,
        )
        self.reference = Reference(reference, finetune=policy.finetune, needed=self.loss.needs_reference)
        self.policy: torch.nn.Module | None = None

    def configure_model(self) -> None:
        """Build the policy and the reference (idempotent)."""
        if self.policy is not None:
            return
        self.policy = load_policy(self.policy_spec, device=role_device(self))
        self.reference.build(self.policy, role_device(self))

    def forward(self, batch: PairwiseBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Return policy log-probs and completion lengths of every stacked row, each of shape (2B,)."""
        return stacked_logps(self.policy, batch)

    def _shared_step(self, batch: PairwiseBatch, stage: str) -> torch.Tensor:
        logps, lengths = self(batch)  # (2B,), (2B,)
        ref_logps = self.reference.logps(batch, stage) if self.loss.needs_reference else None
        chosen_lengths, rejected_lengths = lengths.chunk(2)
        refs = ref_logps.chunk(2) if ref_logps is not None else ()
        normalizer = token_normalizer(chosen_lengths.sum())  # NLL token mean of the global batch
        out = self.loss(*logps.chunk(2), chosen_lengths, rejected_lengths, *refs, nll_normalizer=normalizer)
        metrics = {
            "loss": out.loss,
            **preference_metrics(
                out.chosen_rewards, out.rejected_rewards, *logps.chunk(2), chosen_lengths, rejected_lengths
            ),
        }
        if out.nll is not None:
            metrics["nll"] = out.nll
        if ref_logps is not None:
            metrics["kl"] = sequence_kl(logps, ref_logps)
        log_metrics(self, metrics, stage, batch_size=len(chosen_lengths))
        return out.loss

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


class SimPO(DPO):
    """Alias of ``DPO(loss_type="simpo")`` (``cpo_simpo`` with ``sft_weight`` > 0), so older configs keep working."""

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        beta: PositiveFloat = 2.0,
        simpo_gamma: NonNegativeFloat = 0.5,
        sft_weight: NonNegativeFloat = 0.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        gamma: float | None = None,
    ) -> None:
        """See :class:`DPO`; ``gamma`` is the deprecated name of ``simpo_gamma``."""
        simpo_gamma = renamed(simpo_gamma, gamma, default=0.5, old="gamma", new="simpo_gamma", owner="SimPO")
        loss_type = "cpo_simpo" if sft_weight else "simpo"
        check_args(SimPO.__init__, locals(), "SimPO")
        super().__init__(
            policy,
            loss_type,
            beta=beta,
            simpo_gamma=simpo_gamma,
            sft_weight=sft_weight,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )


class ORPO(DPO):
    """Alias of ``DPO(loss_type="orpo")``, so older configs keep working."""

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        beta: PositiveFloat = 0.1,
        lam: NonNegativeFloat | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """See :class:`DPO`; ``lam`` is the deprecated name of ``beta`` (the odds-ratio weight)."""
        beta = renamed(beta, lam, default=0.1, old="lam", new="beta", owner="ORPO")
        check_args(ORPO.__init__, locals(), "ORPO")
        super().__init__(policy, "orpo", beta=beta, optimizer=optimizer, lr_scheduler=lr_scheduler)
