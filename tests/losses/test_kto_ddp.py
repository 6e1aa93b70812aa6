"""KTO's reference point z0 with 2 CPU processes (gloo) equals the one-process value of the same global batch."""

import torch

from lit_align.losses.kto import kto_loss, kto_reference_point
from lit_align.runtime.distributed import sum_over_ranks
from tests.helpers import run_on_two_processes

# Mismatched pairs' log-ratios pi - ref: rank 0 holds (+3, +1), rank 1 holds (-1,) (unequal shares on purpose).
POLICY_KL = [[0.0, 0.0], [0.0]]
REF_KL = [[-3.0, -1.0], [1.0]]
POLICY = [[-1.0, -2.0], [-0.5]]
REF = [[-1.5, -1.0], [-1.0]]
DESIRABLE = [[True, False], [True]]


def _rank(rank: int) -> dict:
    z0 = kto_reference_point(
        torch.tensor(POLICY_KL[rank]), torch.tensor(REF_KL[rank]), sum_over_processes=sum_over_ranks
    )
    losses = kto_loss(torch.tensor(POLICY[rank]), torch.tensor(REF[rank]), z0, torch.tensor(DESIRABLE[rank])).losses
    return {"z0": z0.item(), "losses": losses.tolist()}


def test_two_processes_share_the_global_reference_point():
    ranks = run_on_two_processes(_rank)
    flat = [x for part in POLICY_KL for x in part], [x for part in REF_KL for x in part]
    single = kto_reference_point(torch.tensor(flat[0]), torch.tensor(flat[1])).item()  # (3 + 1 - 1) / 3 = 1
    assert single == 1.0
    assert ranks[0]["z0"] == ranks[1]["z0"] == single
    # and so the per-row losses equal the one-process losses of the same rows
    one = kto_loss(
        torch.tensor([x for p in POLICY for x in p]),
        torch.tensor([x for p in REF for x in p]),
        torch.tensor(single),
        torch.tensor([x for p in DESIRABLE for x in p]),
    ).losses.tolist()
    assert ranks[0]["losses"] + ranks[1]["losses"] == one
    # without the reduction each process would use its own z0: 2.0 and max(0, -1) = 0.0
    own = [kto_reference_point(torch.tensor(POLICY_KL[r]), torch.tensor(REF_KL[r])).item() for r in range(2)]
    assert own == [2.0, 0.0]
