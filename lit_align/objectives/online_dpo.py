"""Online and iterative DPO: sample completions, rank them with a reward, take DPO steps on the best/worst pairs."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.metrics import log_metrics, preference_metrics, sequence_kl
from lit_align.modeling import Finetune, ModelSpec, reference_mode
from lit_align.objectives.dpo import DPOVariant
from lit_align.objectives.logps import ReferenceMode, checkpoint_without_reference
from lit_align.objectives.online import (
    as_tensors,
    build_online_roles,
    log_rollout,
    sample,
    timed,
    validation_rollout,
    write_samples,
)
from lit_align.objectives.optim import configure_optimizers
from lit_align.rewards.combine import OnRewardError, RewardSpec
from lit_align.rollout import Rollout, SamplingConfig, completion_logps
from lit_align.types import PromptBatch

ARITHMETIC = RewardSpec("lit_align.rewards.arithmetic_answer")


def best_and_worst(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of the highest- and lowest-scored completion of each prompt whose scores differ.

    Args:
        rewards: Reward per completion, NaN when unknown; the G completions of a prompt are consecutive. Shape: (N,)
        group_size: Completions per prompt (G).

    Returns:
        ``(chosen, rejected)`` row indices into the N completions, one pair per usable prompt. Shapes: (M,), (M,)

    """
    grouped = rewards.view(-1, group_size)  # (B, G)
    high = grouped.nan_to_num(-torch.inf).argmax(-1)
    low = grouped.nan_to_num(torch.inf).argmin(-1)
    best = grouped.gather(-1, high.unsqueeze(-1)).squeeze(-1)
    worst = grouped.gather(-1, low.unsqueeze(-1)).squeeze(-1)
    usable = (best > worst) & ~best.isnan() & ~worst.isnan()
    offsets = torch.arange(grouped.shape[0], device=rewards.device) * group_size
    return (offsets + high)[usable], (offsets + low)[usable]


class OnlineDPO(LightningModule):
    """Online DPO (Guo et al., 2024; arXiv:2402.04792) and iterative DPO (Xu et al., 2023; arXiv:2312.16682).

    Each step samples ``num_samples`` completions per prompt from the current policy, scores them with the rewards
    (functions or a reward model), pairs the best with the worst completion of each prompt (prompts whose samples
    all score alike give no pair) and takes one DPO step on those pairs. With ``regenerate_every: N`` the pairs are
    generated every N steps from that step's prompts and the steps in between train on them again (iterative,
    off-policy rounds); 1 is fully online.
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        rewards: list[RewardSpec] = [ARITHMETIC],  # noqa: B006 (read only)
        on_reward_error: OnRewardError = "raise",
        num_samples: int = 4,
        sampling: SamplingConfig = SamplingConfig(),  # noqa: B008
        eval_sampling: SamplingConfig = SamplingConfig(temperature=0.0),  # noqa: B008
        loss_type: Literal["sigmoid", "robust", "ipo", "hinge"] = "sigmoid",
        beta: float = 0.1,
        label_smoothing: float = 0.0,
        reference: Literal["auto", "copy", "adapter"] = "auto",
        regenerate_every: int = 1,
        max_grad_norm: float | None = 1.0,
        log_samples_every_n_steps: int = 50,
        num_samples_to_log: int = 4,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA); the reference starts as this model.
            rewards: Reward functions (or a reward model) that rank the samples.
            on_reward_error: ``raise`` stops at a reward that raises; ``none`` scores that sample None and counts it.
            num_samples: Completions sampled per prompt (at least 2).
            sampling: Temperature, top-p, max new tokens and truncation masking for training rollouts.
            eval_sampling: Sampling for validation (greedy by default).
            loss_type: DPO variant: ``sigmoid``, ``robust``, ``ipo`` or ``hinge``.
            beta: Inverse temperature of the implicit reward.
            label_smoothing: Preference-flip rate for ``sigmoid`` and ``robust``.
            reference: ``auto``, ``copy`` (frozen copy) or ``adapter`` (LoRA/QLoRA: adapter disabled).
            regenerate_every: Generate new pairs every this many steps (1 = online DPO).
            max_grad_norm: Clip the gradient norm before each step; None disables it.
            log_samples_every_n_steps: Write sample prompts, completions and rewards to ``samples.jsonl`` this often.
            num_samples_to_log: How many samples each time.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        super().__init__()
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2 to form pairs, got {num_samples}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.automatic_optimization = False
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.sampling, self.eval_sampling = sampling, eval_sampling  # hparams holds them as plain dicts
        self.loss_fn = DPOVariant(loss_type).loss_fn(beta, label_smoothing)
        self.reference_mode = ReferenceMode(reference).resolve(Finetune(policy.finetune))
        self.policy: torch.nn.Module | None = None
        self.reference: torch.nn.Module | None = None
        self.pairs: Rollout | None = None
        self.reward_set = None  # built in configure_model, so a bad reward is a one-line error, not a dump
        self.strict_loading = False  # checkpoints leave out the frozen reference

    def configure_model(self) -> None:
        """Build the policy, its tokenizer and, under full fine-tuning, the frozen reference copy."""
        if self.policy is not None:
            return
        build_online_roles(self, self.reference_mode)

    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """(Every ``regenerate_every`` steps) sample -> rank -> pair; then one DPO step on the pairs."""
        hp, timings, extra = self.hparams, {}, {}
        if batch_idx % hp.regenerate_every == 0:  # the same decision on every rank (generation is collective)
            with timed(timings, "timing/generation"):
                grouped, rollout, completions = sample(self, batch, hp.num_samples, self.sampling)
            with timed(timings, "timing/scoring"):
                scores = self.reward_set(grouped["prompts"], completions, grouped["columns"])
                total = scores.total.clone()
                total[~rollout.completion_mask.any(-1).cpu()] = float("nan")  # masked (truncated): no pair
                chosen, rejected = best_and_worst(total, hp.num_samples)
                rows = torch.cat([chosen, rejected]).to(rollout.input_ids.device)
                self.pairs = Rollout(*(t[rows] for t in rollout)) if len(chosen) else None
            extra["pairs_per_prompt"] = torch.tensor(len(chosen) / len(batch["prompts"]))
            log_rollout(self, "train", rollout, scores, hp.num_samples, extra)
            if hp.log_samples_every_n_steps and batch_idx % hp.log_samples_every_n_steps == 0:
                write_samples(self, grouped["prompts"], completions, scores, hp.num_samples_to_log)
        if self.pairs is None:
            # Every prompt's samples scored alike: nothing to learn, but under DDP every rank must still take part
            # in the gradient all-reduce, so step on a zero loss.
            self._optimizer_step(sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0)
            return
        with timed(timings, "timing/update"):
            metrics = self._dpo_step(self.pairs)
        log_metrics(self, {**metrics, **as_tensors(timings)}, "train", batch_size=len(self.pairs.input_ids) // 2)

    def _dpo_step(self, pairs: Rollout) -> dict[str, torch.Tensor]:
        mask = pairs.completion_mask
        logps = (completion_logps(self.policy, pairs).token_logps * mask).sum(-1)  # (2M,)
        with reference_mode(self.policy, self.reference) as ref:
            ref_logps = (completion_logps(ref, pairs).token_logps * mask).sum(-1)
        pc, pr = logps.chunk(2)
        out = self.loss_fn(pc, pr, *ref_logps.chunk(2))
        loss = out.losses.mean()
        self._optimizer_step(loss)
        lengths = mask.sum(-1)
        metrics = preference_metrics(out.chosen_rewards, out.rejected_rewards, pc, pr, *lengths.chunk(2))
        return {"loss": loss.detach(), **metrics, "kl": sequence_kl(logps, ref_logps)}

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        opt, sched = self.optimizers(), self.lr_schedulers()
        opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.max_grad_norm:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        opt.step()
        if sched is not None:
            sched.step()

    def validation_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """Greedy completions of held-out prompts: ``val/reward`` and the completion metrics."""
        validation_rollout(self, batch, "val", self.eval_sampling)

    def test_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """The same on the test split."""
        validation_rollout(self, batch, "test", self.eval_sampling)

    def configure_optimizers(self) -> Any:
        """Optimizer over trainable parameters (never the frozen reference)."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the frozen reference copy."""
        checkpoint_without_reference(checkpoint)
