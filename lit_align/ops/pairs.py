"""Pair selection by score: which completions of a prompt become (chosen, rejected) pairs.

Shared by ``OnlineDPO`` (pairs of each step's samples) and ``lit-align generate --mode pairs`` (pairs written to
JSONL). Shape legend: N completions (B prompts x G), G completions per prompt, M pairs kept.
"""

from __future__ import annotations

from typing import Literal

import torch

Pairing = Literal["best_worst", "best_rest", "all"]
"""``best_worst``: the best against the worst completion of each prompt (one pair per prompt, as online DPO);
``best_rest``: the best against every other; ``all``: every ordered pair of the ranking (up to G(G-1)/2)."""


def select_pairs(
    scores: torch.Tensor, group_size: int, pairing: Pairing = "best_worst", min_margin: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of the (chosen, rejected) pairs among each prompt's completions.

    A pair needs both scores known and the chosen one higher by more than ``min_margin``, so ties are dropped and a
    prompt whose completions all score alike gives none. Where several completions share the best (or worst) score
    the first is taken. Pairs come prompt by prompt, then by chosen row, then by rejected row.

    Args:
        scores: Score per completion, NaN when unknown; the G completions of a prompt are consecutive. Shape: (N,)
        group_size: Completions per prompt (G).
        pairing: Which pairs of a prompt's ranking to keep (see :data:`Pairing`).
        min_margin: Smallest score difference that makes a pair (strictly greater).

    Returns:
        ``(chosen, rejected)`` row indices into the N completions. Shapes: (M,), (M,)

    """
    grouped = scores.view(-1, group_size)  # (B, G)
    margins = grouped.unsqueeze(-1) - grouped.unsqueeze(-2)  # (B, G, G): [b, i, j] = s_i - s_j; NaN when unknown
    keep = margins > min_margin  # NaN compares False
    rows = torch.arange(group_size, device=scores.device)
    if pairing != "all":
        best = grouped.nan_to_num(-torch.inf).argmax(-1)  # (B,)
        keep &= (rows == best[:, None])[:, :, None]  # chosen: the best
    if pairing == "best_worst":
        worst = grouped.nan_to_num(torch.inf).argmin(-1)  # (B,)
        keep &= (rows == worst[:, None])[:, None, :]  # rejected: the worst
    prompt, i, j = keep.nonzero(as_tuple=True)
    offsets = prompt * group_size
    return offsets + i, offsets + j


def round_robin_scores(preferences: torch.Tensor) -> torch.Tensor:
    """Each completion's mean preference over the other completions of its prompt (a round-robin's win rate).

    With a pairwise judge, ``preferences[b, i, j]`` is how strongly answer i beats answer j (1: i is better, 0: j is,
    0.5: a tie); score_i = mean over j != i of ``preferences[b, i, j]``, over the entries that are known. This is the
    Borda count of the tournament, so a prompt's ranking uses every comparison, not one anchor's.

    Args:
        preferences: P(i better than j), NaN where unknown; the diagonal is ignored. Shape: (B, G, G)

    Returns:
        The score of each completion, NaN where none of its comparisons is known. Shape: (B, G)

    """
    size = preferences.shape[-1]
    off_diagonal = ~torch.eye(size, dtype=torch.bool, device=preferences.device)
    known = preferences.isfinite() & off_diagonal  # (B, G, G)
    total = torch.where(known, preferences, 0).sum(-1)  # (B, G)
    count = known.sum(-1)  # (B, G)
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)
