"""bf16-mixed against fp32: the DPO loss, its log-probs and its gradient stay within the stated tolerance.

The tolerance is what README "Performance" states for ``--trainer.precision bf16-mixed``, on the embedded model
and data: the DPO loss within 0.01 of fp32 (absolute); sequence log-probs off by at most 0.1 nat on average and
0.5 nat for any row (about 4% of that row's log-prob: bf16 keeps 8 bits of mantissa); the gradient within 5% of
the fp32 one (norm of the difference over the fp32 norm).
"""

import copy

import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.losses.specs import preference_loss_spec
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.scoring import stacked_logps

LOSS_ATOL, LOGPS_MEAN, LOGPS_MAX, GRAD_RTOL = 0.01, 0.1, 0.5, 0.05


def test_bf16_mixed_dpo_is_within_the_stated_tolerance_of_fp32():
    torch.manual_seed(0)
    policy = load_policy(ModelSpec())
    reference = copy.deepcopy(policy)
    dm = PairwiseDataModule(source=DataSource(num_rows=16, num_val_rows=16), batch_size=16)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    loss_fn = preference_loss_spec("sigmoid")

    def dpo(context):
        policy.zero_grad()
        with context:
            logps, lengths = stacked_logps(policy, batch)
            with torch.no_grad():
                ref, _ = stacked_logps(reference, batch)
            out = loss_fn(*logps.chunk(2), *lengths.chunk(2), *ref.chunk(2), nll_normalizer=lengths.sum())
        out.loss.backward()
        grad = torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])
        return out.loss.detach(), logps.detach().float(), grad

    fp32 = torch.autocast("cpu", enabled=False)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-4)
    for _ in range(4):  # a policy that has moved away from its reference: the loss is no longer ln 2
        dpo(fp32)
        optimizer.step()
    loss32, logps32, grad32 = dpo(fp32)
    loss16, logps16, grad16 = dpo(MixedPrecision("bf16-mixed", "cpu").forward_context())
    assert logps16.dtype == torch.float32 and loss32.item() < 0.65  # a loss that measures something
    assert abs(loss16 - loss32) < LOSS_ATOL, (loss16, loss32)
    error = (logps16 - logps32).abs()
    assert error.mean() < LOGPS_MEAN and error.max() < LOGPS_MAX, error
    assert (grad16 - grad32).norm() / grad32.norm() < GRAD_RTOL
