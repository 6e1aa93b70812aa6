"""Alignment metrics as pure functions, and the one helper that logs them under ``train/`` and ``val/``.

Shape legend: B batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch
from lightning import LightningModule

from lit_align.ops.logprobs import masked_mean
from lit_align.types import IGNORE_INDEX

PROGRESS_BAR = ("loss", "rewards/accuracies", "rewards/margins", "reward", "kl", "step_accuracy")


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


def token_kl(policy_logps: torch.Tensor, ref_logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The log-ratio per completion token: ``sum_i (log pi(y_i|x_i) - log ref(y_i|x_i)) / sum_i |y_i|``.

    :func:`sequence_kl` grows with completion length; this is the same drift in nats per token, comparable between
    tasks, models and objectives (``kl_per_token`` in the logs, what :class:`~lit_align.runtime.monitors.KLBound`
    bounds).

    Args:
        policy_logps: Policy sequence log-probs. Shape: (N,)
        ref_logps: Reference sequence log-probs. Shape: (N,)
        lengths: Completion token counts. Shape: (N,)

    Returns:
        Scalar; 0 when there are no completion tokens. Shape: ()

    """
    return ((policy_logps - ref_logps).sum() / lengths.sum().clamp(min=1)).detach()


def log_metrics(module: LightningModule, metrics: dict[str, torch.Tensor], stage: str, batch_size: int) -> None:
    """Log ``metrics`` as ``{stage}/{name}``, averaged over processes; a few also go to the progress bar."""
    named = {f"{stage}/{k}": v for k, v in metrics.items()}
    bar = {k: v for k, v in named.items() if k.split("/", 1)[1] in PROGRESS_BAR}
    module.log_dict(bar, batch_size=batch_size, sync_dist=True, prog_bar=True)
    module.log_dict({k: v for k, v in named.items() if k not in bar}, batch_size=batch_size, sync_dist=True)


def distinct_n(sequences: Sequence[Sequence[Hashable]], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016; arXiv:1510.03055): unique n-grams / all n-grams over a set of completions.

    Args:
        sequences: Token ids (or words) of each completion, without padding.
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


# Evaluation metrics over lists of responses (``lit-align evaluate``, ``check-data``, the win-rate callback).


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (n - 1, as ``torch.std``) of the known values; None and NaN are left out.

    Returns:
        ``(mean, std, known)``; the mean is NaN without a known value, the std 0.0 with fewer than two.

    """
    known = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not known:
        return math.nan, 0.0, 0
    mean = sum(known) / len(known)
    if len(known) < 2:
        return mean, 0.0, len(known)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in known) / (len(known) - 1)), len(known)


def win_tie_rates(scores: Sequence[float | None], reference_scores: Sequence[float | None]) -> tuple[float, float, int]:
    """Win rate against a reference's responses, ties counting half, and the tie rate.

    win_rate = mean_i (1[s_i > r_i] + 0.5 * 1[s_i = r_i]),   tie_rate = mean_i 1[s_i = r_i]

    over the pairs i where both scores are known (None or NaN leaves a pair out).

    Returns:
        ``(win_rate, tie_rate, pairs compared)``; NaN rates when no pair has both scores.

    """
    assert len(scores) == len(reference_scores), "one reference score per score"
    pairs = [
        (float(s), float(r))
        for s, r in zip(scores, reference_scores, strict=True)
        if s is not None and r is not None and not math.isnan(s) and not math.isnan(r)
    ]
    if not pairs:
        return math.nan, math.nan, 0
    wins = sum(s > r for s, r in pairs)
    ties = sum(s == r for s, r in pairs)
    return (wins + 0.5 * ties) / len(pairs), ties / len(pairs), len(pairs)


def best_of_n(scores: Sequence[Sequence[float | None]]) -> list[int | None]:
    """Index of the best-scored response of each prompt (the first of equal best), None when none is scored.

    Args:
        scores: N scores per prompt, None or NaN where the scorer could not score a response.

    """
    picks: list[int | None] = []
    for row in scores:
        known = [(float(v), -i) for i, v in enumerate(row) if v is not None and not math.isnan(v)]
        picks.append(-max(known)[1] if known else None)
    return picks


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021; arXiv:2107.03374).

    pass@k = 1 - C(n - c, k) / C(n, k); with k = n it is 1 when any sample is correct.
    """
    assert 0 < k <= num_samples and 0 <= num_correct <= num_samples, "need 0 < k <= n and 0 <= c <= n"
    if num_samples - num_correct < k:
        return 1.0
    return 1.0 - math.comb(num_samples - num_correct, k) / math.comb(num_samples, k)


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two labelings of the same items: (p_o - p_e) / (1 - p_e).

    p_o is the share of items with the same label, p_e the agreement expected by chance from each labeling's label
    frequencies. 1 is perfect agreement, 0 chance level; NaN when both give one label to everything (p_e = 1).
    """
    assert len(first) == len(second) and first, "two labelings of the same, non-empty items"
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    labels = set(first) | set(second)
    expected = sum((list(first).count(c) / n) * (list(second).count(c) / n) for c in labels)
    if expected == 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (z = 1.96: 95%); ``(0, 1)`` without trials.

    centre = (p + z^2 / 2n) / (1 + z^2 / n),   half-width = z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)
    """
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def response_summary(
    texts: Sequence[str],
    token_ids: Sequence[Sequence[int]],
    scores: Sequence[float | None] | None = None,
    correct: Sequence[bool | None] | None = None,
) -> dict[str, float]:
    """What ``lit-align evaluate`` reports about a set of responses (one per entry, all prompts and samples).

    Args:
        texts: Each response's text; words are its whitespace-separated pieces.
        token_ids: Each response's tokens, without padding or the stop token.
        scores: The scorer's value of each response (None where it could not score one).
        correct: Exact match of each response with its reference answer (None where the row has no answer).

    Returns:
        ``responses``, ``length_tokens_{mean,std}``, ``length_words_{mean,std}``, ``distinct_{1,2}`` (tokens),
        ``distinct_{1,2}_words``; with scores ``reward_{mean,std}`` and ``reward_failures`` (responses not scored);
        with answers ``exact_match`` (over the rows that have one) and ``answered``.

    """
    assert len(texts) == len(token_ids), "one token list per text"
    words = [t.split() for t in texts]
    out: dict[str, float] = {"responses": len(texts)}
    for name, lengths in (("tokens", [len(t) for t in token_ids]), ("words", [len(w) for w in words])):
        mean, std, _ = mean_std(lengths)
        out[f"length_{name}_mean"], out[f"length_{name}_std"] = mean, std
    for n in (1, 2):
        out[f"distinct_{n}"] = distinct_n(token_ids, n)
        out[f"distinct_{n}_words"] = distinct_n(words, n)
    if scores is not None:
        assert len(scores) == len(texts), "one score per response"
        mean, std, known = mean_std(scores)
        out["reward_mean"], out["reward_std"], out["reward_failures"] = mean, std, len(scores) - known
    if correct is not None:
        answered = [bool(c) for c in correct if c is not None]
        if answered:
            out["exact_match"], out["answered"] = sum(answered) / len(answered), len(answered)
    return out


def process_reward_metrics(step_logits: torch.Tensor, step_labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """A process reward model's batch metrics, with a step judged right when its score's probability is > 0.5.

    - ``step_accuracy``: share of labelled steps classified as their label says (soft labels rounded at 0.5);
    - ``first_error_accuracy``: share of solutions whose first step judged wrong is the first wrong step (or, for a
      solution without a wrong step, where no step is judged wrong), the earliest-error task of ProcessBench
      (Zheng et al., 2024; arXiv:2412.06559);
    - ``solution_accuracy``: share of solutions judged all-right exactly when all their steps are right;
    - ``scores/right`` and ``scores/wrong``: mean probability given to right and to wrong steps, and
      ``scores/margin`` their difference (0 when the batch lacks one kind), which a PRM that learns nothing keeps
      at 0.

    Args:
        step_logits: Score of every position. Shape: (B, T)
        step_labels: Label at each step end, ``IGNORE_INDEX`` elsewhere. Shape: (B, T)

    """
    probs, labels = step_logits.detach().float().sigmoid(), step_labels.detach()
    right_steps, hits, first, whole = [], [], [], []
    for row_probs, row_labels in zip(probs, labels, strict=True):
        labelled = row_labels != IGNORE_INDEX
        truth = row_labels[labelled].float() > 0.5  # (S,)
        judged = row_probs[labelled] > 0.5  # (S,)
        hits.append(judged == truth)
        right_steps.append(truth)
        first.append(_first_false(judged) == _first_false(truth))
        whole.append(bool(judged.all()) == bool(truth.all()))
    truth_all, probs_all = torch.cat(right_steps), probs[labels != IGNORE_INDEX]
    right = probs_all[truth_all].mean() if truth_all.any() else torch.tensor(float("nan"))
    wrong = probs_all[~truth_all].mean() if (~truth_all).any() else torch.tensor(float("nan"))
    return {
        "step_accuracy": torch.cat(hits).float().mean(),
        "first_error_accuracy": torch.tensor(first, dtype=torch.float32).mean(),
        "solution_accuracy": torch.tensor(whole, dtype=torch.float32).mean(),
        "scores/right": right,
        "scores/wrong": wrong,
        "scores/margin": (right - wrong).nan_to_num(0.0),
    }


def _first_false(flags: torch.Tensor) -> int:
    """Index of the first False in ``flags`` (S,), or S when all are True."""
    wrong = (~flags).nonzero()
    return int(wrong[0]) if len(wrong) else len(flags)
