"""Alignment metrics as pure functions, and the one helper that logs them under ``train/`` and ``val/``.

Shape legend: B batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

import torch
from lightning import LightningModule

from lit_align.ops.logprobs import masked_mean

PROGRESS_BAR = ("loss", "rewards/accuracies", "rewards/margins", "reward", "kl")


def token_accuracy(predicted: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Fraction of counted positions where the most likely token is the target.

    Args:
        predicted: The most likely next token at each position (argmax of the logits). Shape: (B, T)
        targets: Target ids. Shape: (B, T)
        loss_mask: Bool, True where a position counts. Shape: (B, T)

    Returns:
        Accuracy in [0, 1]; 0 when nothing counts. Shape: ()

    """
    hits = (predicted == targets) & loss_mask
    return hits.sum() / loss_mask.sum().clamp(min=1)


def preference_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Batch means under the names TRL users know (``rewards/margins``, ``rewards/accuracies``, ...).

    Args:
        chosen_rewards: Reward of each chosen completion. Shape: (B,)
        rejected_rewards: Reward of each rejected completion. Shape: (B,)
        policy_chosen_logps: Policy log p(chosen | prompt). Shape: (B,)
        policy_rejected_logps: Policy log p(rejected | prompt). Shape: (B,)
        chosen_lengths: Completion tokens of each chosen completion. Shape: (B,)
        rejected_lengths: Completion tokens of each rejected completion. Shape: (B,)

    Returns:
        Scalar tensors keyed by metric name.

    """
    return {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
        "logps/chosen": policy_chosen_logps.detach().mean(),
        "logps/rejected": policy_rejected_logps.detach().mean(),
        "lengths/chosen": chosen_lengths.float().mean(),
        "lengths/rejected": rejected_lengths.float().mean(),
    }


def kto_metrics(
    rewards: torch.Tensor, policy_logps: torch.Tensor, desirable: torch.Tensor, reference_point: torch.Tensor
) -> dict[str, torch.Tensor]:
    """KTO's batch metrics under TRL's names; a label absent from the batch gives 0 for its means.

    Args:
        rewards: Implicit reward of each completion. Shape: (B,)
        policy_logps: Policy log p(y | x) of each completion. Shape: (B,)
        desirable: Bool label of each completion. Shape: (B,)
        reference_point: z0. Shape: ()

    Returns:
        ``kl``, ``rewards/{chosen,rejected,margins}``, ``logps/{chosen,rejected}``, ``fraction_desirable``.

    """
    chosen, rejected = masked_mean(rewards, desirable), masked_mean(rewards, ~desirable)
    return {
        "kl": reference_point,
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "logps/chosen": masked_mean(policy_logps.detach(), desirable),
        "logps/rejected": masked_mean(policy_logps.detach(), ~desirable),
        "fraction_desirable": desirable.float().mean(),
    }


def reward_model_metrics(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """A reward model's batch metrics: ``accuracy`` (chosen scored strictly higher), ``margin``, mean scores.

    Args:
        chosen_scores: Score of each chosen completion. Shape: (B,)
        rejected_scores: Score of each rejected completion. Shape: (B,)

    """
    chosen, rejected = chosen_scores.detach(), rejected_scores.detach()
    return {
        "accuracy": (chosen > rejected).float().mean(),
        "margin": (chosen - rejected).mean(),
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
    }


def sequence_kl(policy_logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Mean log-ratio ``log pi(y|x) - log ref(y|x)`` over the batch's completions (the k1 KL estimate).

    It estimates KL(pi || ref) when the completions are sampled from pi; on offline data it measures how far
    the policy's likelihood of the data has moved from the reference's.

    Args:
        policy_logps: Policy sequence log-probs. Shape: (N,)
        ref_logps: Reference sequence log-probs. Shape: (N,)

    Returns:
        Scalar. Shape: ()

    """
    return (policy_logps - ref_logps).detach().mean()


def log_metrics(module: LightningModule, metrics: dict[str, torch.Tensor], stage: str, batch_size: int) -> None:
    """Log ``metrics`` as ``{stage}/{name}``, averaged over processes; a few also go to the progress bar."""
    named = {f"{stage}/{k}": v for k, v in metrics.items()}
    bar = {k: v for k, v in named.items() if k.split("/", 1)[1] in PROGRESS_BAR}
    module.log_dict(bar, batch_size=batch_size, sync_dist=True, prog_bar=True)
    module.log_dict({k: v for k, v in named.items() if k not in bar}, batch_size=batch_size, sync_dist=True)


def distinct_n(sequences: list[list[int]], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016; arXiv:1510.03055): unique n-grams / all n-grams over a set of completions.

    Args:
        sequences: Token ids of each completion (without padding).
        n: N-gram size.

    Returns:
        A fraction in [0, 1]; 0 when no completion has n tokens.

    """
    grams = [tuple(s[i : i + n]) for s in sequences for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var(returns - values) / Var(returns)`` over counted tokens: 1 is a perfect value function, 0 a constant.

    Args:
        values: Value predictions. Shape: (N, R)
        returns: Value targets. Shape: (N, R)
        mask: Bool, True where a token counts. Shape: (N, R)

    Returns:
        Scalar. Shape: ()

    """
    count = mask.sum().clamp(min=1)

    def var(x: torch.Tensor) -> torch.Tensor:
        mean = (x * mask).sum() / count
        return ((x - mean) ** 2 * mask).sum() / count

    return 1 - var(returns - values) / var(returns).clamp(min=1e-8)
