"""RewardModel: a Bradley-Terry reward model (scalar head on any Hugging Face backbone) trained on pairs."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.domains import NonNegativeFloat, NonNegativeInt, check_args
from lit_align.losses.reward import bradley_terry_loss, center_penalty
from lit_align.losses.sft import sequence_nll_loss
from lit_align.metrics import log_metrics, reward_model_metrics
from lit_align.objectives.optim import configure_optimizers, role_device
from lit_align.ops.logprobs import sequence_logps
from lit_align.roles.models import ModelSpec, frozen_lm_head, load_policy
from lit_align.runtime.distributed import token_normalizer
from lit_align.types import PairwiseBatch


class RewardModel(LightningModule):
    """Train a scalar reward ``r(prompt, completion)`` so that chosen completions outscore rejected ones.

    The model is ``AutoModelForSequenceClassification`` with one label (the score is read at the last token).
    It is named ``policy`` like every objective's trained model, so the same overlays (LoRA, QLoRA) apply.
    Logs ``{stage}/loss``, ``accuracy`` (chosen scored higher), ``margin``, ``rewards/chosen``, ``rewards/rejected``,
    and ``nll`` when ``sft_weight`` is set.
    The saved Hugging Face folder loads with ``AutoModelForSequenceClassification`` and scores pairs through
    :class:`lit_align.rewards.model.RewardModelScorer`.
    """

    head = "reward"

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        center_rewards_coefficient: NonNegativeFloat = 0.0,
        sft_weight: NonNegativeFloat = 0.0,
        expand_layers: NonNegativeInt = 0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The backbone to train and how (full, LoRA, QLoRA); a scalar head is added.
            center_rewards_coefficient: Weight of a ``mean((r_c + r_r)^2)`` term that keeps scores centred on 0
                (Eisenstein et al., 2023; arXiv:2312.09244); 0 disables it.
            sft_weight: Weight of a language-modelling loss on the chosen completions, read from the backbone's
                last hidden states through a frozen copy of its LM head (text-generation regularisation, GRM;
                Yang et al., 2024; arXiv:2406.10216). It keeps the next-token knowledge a verifier needs; 0 disables
                it. The exported model is an ordinary sequence classifier either way.
            expand_layers: New decoder blocks stacked on the backbone, each a copy of the last one whose output
                projections start at zero, so the model starts unchanged (block expansion, arXiv:2401.02415). Gives
                the score head more depth on a small backbone; the exported model keeps them. Llama-style blocks;
                full or LoRA fine-tuning.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        check_args(RewardModel.__init__, locals(), "RewardModel")
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.policy: torch.nn.Module | None = None
        self.register_buffer("lm_head", None, persistent=False)  # (V, D) frozen, rebuilt by configure_model

    def configure_model(self) -> None:
        """Build the backbone with its scalar head (idempotent)."""
        if self.policy is None:
            self.policy = load_policy(
                self.policy_spec, device=role_device(self), head="reward", expand_layers=self.hparams.expand_layers
            )
            if self.hparams.sft_weight:
                self.lm_head = frozen_lm_head(self.policy_spec, self.policy)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Return one scalar reward per row, shape (N,)."""
        return self.policy(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits.squeeze(-1)

    def _shared_step(self, batch: PairwiseBatch, stage: str) -> torch.Tensor:
        regularise = self.lm_head is not None
        out = self.policy(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            use_cache=False,
            output_hidden_states=regularise,
        )
        chosen, rejected = out.logits.squeeze(-1).float().chunk(2)  # (B,), (B,)
        loss = bradley_terry_loss(chosen, rejected).mean()
        if self.hparams.center_rewards_coefficient:
            loss = loss + self.hparams.center_rewards_coefficient * center_penalty(chosen, rejected)
        nll = None
        if regularise:
            hidden = out.hidden_states[-1].chunk(2)[0]  # (B, T, D) chosen rows, after the final norm
            lm_logits = hidden @ self.lm_head.to(hidden).T  # (B, T, V)
            logps, lengths = sequence_logps(lm_logits, batch["labels"].chunk(2)[0])  # (B,), (B,)
            nll = sequence_nll_loss(logps, lengths, token_normalizer(lengths.sum()))
            loss = loss + self.hparams.sft_weight * nll
        metrics = {"loss": loss, **reward_model_metrics(chosen, rejected)}
        if nll is not None:
            metrics["nll"] = nll.detach()
        log_metrics(self, metrics, stage, batch_size=len(chosen))
        return loss

    def training_step(self, batch: PairwiseBatch, batch_idx: int) -> torch.Tensor:
        """One optimisation step on a batch of pairs."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch: PairwiseBatch, batch_idx: int) -> None:
        """Log held-out pairwise accuracy and margin."""
        self._shared_step(batch, "val")

    def test_step(self, batch: PairwiseBatch, batch_idx: int) -> None:
        """Log the same metrics on the test split (``lit-align test``)."""
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        """Optimizer over trainable parameters."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)
