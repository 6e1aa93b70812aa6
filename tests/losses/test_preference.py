"""Preference losses against the published formulas, written out with plain math on a fixed batch."""

import math

import pytest
import torch

from lit_align.losses.kto import kto_loss, kto_reference_point
from lit_align.losses.preference import dpo_loss, hinge_loss, ipo_loss, robust_dpo_loss
from lit_align.losses.reference_free import orpo_loss, simpo_loss
from lit_align.losses.reward import bradley_terry_loss, center_penalty

PC = [-1.0, -2.0, -3.5]  # policy chosen
PR = [-2.0, -1.5, -4.0]  # policy rejected
RC = [-1.5, -2.0, -3.0]  # reference chosen
RR = [-1.5, -1.0, -4.5]  # reference rejected


def _t(values, grad=False):
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def _logsig(x):
    return -math.log1p(math.exp(-x))


def _h(i):
    return (PC[i] - RC[i]) - (PR[i] - RR[i])  # logratios: 1.0, 0.0, -1.0


def test_dpo_matches_formula_and_rewards():
    beta, eps = 0.5, 0.2
    out = dpo_loss(_t(PC), _t(PR), _t(RC), _t(RR), beta=beta, label_smoothing=eps)
    expected = [-(1 - eps) * _logsig(beta * _h(i)) - eps * _logsig(-beta * _h(i)) for i in range(3)]
    assert out.losses.tolist() == pytest.approx(expected, abs=1e-6)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * (PC[i] - RC[i]) for i in range(3)], abs=1e-6)
    assert out.rejected_rewards.tolist() == pytest.approx([beta * (PR[i] - RR[i]) for i in range(3)], abs=1e-6)


def test_dpo_limits():
    """Limits written out by hand: eps = 0 is -log sigmoid(beta h) (plain DPO) for cDPO and robust DPO alike;
    eps = 1/2 makes cDPO symmetric in h; equal log-ratios give log 2."""
    beta = 0.1
    plain = [-_logsig(beta * _h(i)) for i in range(3)]
    smoothed0 = dpo_loss(_t(PC), _t(PR), _t(RC), _t(RR), beta=beta, label_smoothing=0.0)
    assert smoothed0.losses.tolist() == pytest.approx(plain, abs=1e-9)
    robust0 = robust_dpo_loss(_t(PC), _t(PR), _t(RC), _t(RR), beta=beta, label_smoothing=0.0)
    assert robust0.losses.tolist() == pytest.approx(plain, abs=1e-9)
    half = dpo_loss(_t(PC), _t(PR), _t(RC), _t(RR), beta=beta, label_smoothing=0.5).losses.tolist()
    assert half == pytest.approx([-0.5 * (_logsig(beta * _h(i)) + _logsig(-beta * _h(i))) for i in range(3)])
    assert half[0] == pytest.approx(half[2], abs=1e-12)  # h = +1 and h = -1 cost the same at eps = 1/2
    equal = dpo_loss(_t([-1.0]), _t([-1.0]), _t([-2.0]), _t([-2.0]))
    assert equal.losses.item() == pytest.approx(math.log(2), abs=1e-12)


def test_robust_dpo_matches_formula():
    beta, eps = 0.5, 0.2
    out = robust_dpo_loss(_t(PC), _t(PR), _t(RC), _t(RR), beta=beta, label_smoothing=eps)
    expected = [(-(1 - eps) * _logsig(beta * _h(i)) + eps * _logsig(-beta * _h(i))) / (1 - 2 * eps) for i in range(3)]
    assert out.losses.tolist() == pytest.approx(expected, abs=1e-6)


def test_ipo_and_hinge_match_formula():
    beta = 0.25
    ipo = ipo_loss(_t(PC), _t(PR), _t(RC), _t(RR), beta=beta)
    assert ipo.losses.tolist() == pytest.approx([(_h(i) - 1 / (2 * beta)) ** 2 for i in range(3)], abs=1e-6)
    hinge = hinge_loss(_t(PC), _t(PR), _t(RC), _t(RR), beta=beta)
    assert hinge.losses.tolist() == pytest.approx([max(0.0, 1 - beta * _h(i)) for i in range(3)], abs=1e-6)


@pytest.mark.parametrize("loss_fn", [dpo_loss, robust_dpo_loss, ipo_loss, hinge_loss])
def test_reference_losses_push_chosen_up_and_rejected_down(loss_fn):
    pc, pr = _t([-1.0], grad=True), _t([-1.0], grad=True)
    loss_fn(pc, pr, _t([-1.0]), _t([-1.0]), beta=0.1).losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises log p(chosen), lowers log p(rejected)


def test_simpo_matches_formula():
    beta, gamma = 2.0, 0.5
    out = simpo_loss(_t(PC), _t(PR), beta=beta, simpo_gamma=gamma)
    assert out.losses.tolist() == pytest.approx(
        [-_logsig(beta * PC[i] - beta * PR[i] - gamma) for i in range(3)], abs=1e-6
    )
    pc, pr = _t([-1.0], grad=True), _t([-1.0], grad=True)
    simpo_loss(pc, pr).losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()


def test_orpo_odds_ratio_term_matches_formula():
    lam = 0.3
    out = orpo_loss(_t(PC), _t(PR), beta=lam)

    def log_odds(mean):
        p = math.exp(mean)
        return math.log(p / (1 - p))

    expected = [-lam * _logsig(log_odds(PC[i]) - log_odds(PR[i])) for i in range(3)]  # the NLL is the spec's
    assert out.losses.tolist() == pytest.approx(expected, abs=1e-6)
    pc, pr = _t([-1.0], grad=True), _t([-1.0], grad=True)
    orpo_loss(pc, pr).losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()


def test_kto_matches_formula():
    beta, wd, wu = 0.5, 1.0, 1.5
    policy, ref = [-1.0, -2.0, -3.0], [-1.5, -1.0, -3.0]
    kl_policy, kl_ref = [-2.0, -3.0, -1.0], [-2.5, -2.0, -2.0]  # mean difference (0.5 - 1 + 1) / 3 = 1/6
    labels = [True, False, True]
    out = kto_loss(
        _t(policy),
        _t(ref),
        kto_reference_point(_t(kl_policy), _t(kl_ref)),
        torch.tensor(labels),
        beta=beta,
        desirable_weight=wd,
        undesirable_weight=wu,
    )
    z0 = 1 / 6

    def sig(x):
        return 1 / (1 + math.exp(-x))

    expected = []
    for p, r, desirable in zip(policy, ref, labels, strict=True):
        reward = p - r
        expected.append(wd * (1 - sig(beta * (reward - z0))) if desirable else wu * (1 - sig(beta * (z0 - reward))))
    assert out.losses.tolist() == pytest.approx(expected, abs=1e-6)
    assert out.kl.item() == pytest.approx(z0, abs=1e-12)
    assert kto_reference_point(_t([-3.0]), _t([-1.0])).item() == 0.0  # z0 is clamped at zero


def test_kto_reference_point_is_reduced_over_processes_before_clamping():
    """This process holds mismatched pairs with pi - ref = (+3, +1); alone it would say z0 = 2.
    With another process holding (-6,): global z0 = max(0, (3 + 1 - 6) / 3) = 0 (clamping each process first: 2).
    With (-1,) there: global z0 = (3 + 1 - 1) / 3 = 1, where the mean of the processes' means is (2 - 1) / 2 = 0.5."""
    mine_policy, mine_ref = _t([0.0, 0.0]), _t([-3.0, -1.0])

    def with_other(diffs):
        def total(x):  # what an all-reduce sum over the two processes returns
            return x + torch.tensor([sum(diffs), float(len(diffs))], dtype=x.dtype)

        return kto_reference_point(mine_policy, mine_ref, sum_over_processes=total).item()

    assert kto_reference_point(mine_policy, mine_ref).item() == pytest.approx(2.0)
    assert with_other([-6.0]) == 0.0
    assert with_other([-1.0]) == pytest.approx(1.0)


def test_kto_gradient_signs():
    policy = _t([-1.0, -1.0], grad=True)
    kto_loss(policy, _t([-1.0, -1.0]), _t(0.0), torch.tensor([True, False])).losses.sum().backward()
    assert policy.grad[0].item() < 0 < policy.grad[1].item()


def test_bradley_terry_matches_formula_and_margin():
    chosen, rejected, margin = [1.0, 0.0, -2.0], [0.0, 0.0, 1.0], [0.5, 0.0, 1.0]
    assert bradley_terry_loss(_t(chosen), _t(rejected)).tolist() == pytest.approx(
        [-_logsig(c - r) for c, r in zip(chosen, rejected, strict=True)], abs=1e-6
    )
    with_margin = bradley_terry_loss(_t(chosen), _t(rejected), _t(margin))
    assert with_margin.tolist() == pytest.approx(
        [-_logsig(c - r - m) for c, r, m in zip(chosen, rejected, margin, strict=True)], abs=1e-6
    )
    assert bradley_terry_loss(_t([0.0]), _t([0.0])).item() == pytest.approx(math.log(2))


def test_center_penalty_by_hand():
    # mean((1 + 0)^2, (0 + 0)^2, (-2 + 1)^2) = (1 + 0 + 1) / 3
    assert center_penalty(_t([1.0, 0.0, -2.0]), _t([0.0, 0.0, 1.0])).item() == pytest.approx(2 / 3)


def test_spin_loss_is_the_sigmoid_spec_on_real_over_generated():
    """SPIN (Chen et al., 2024, eq. 4.7 with the logistic loss l(t) = log(1 + exp(-t))): for the real answer y and the
    model's own y', t = lambda * [log p(y)/p_t(y) - log p(y')/p_t(y')] against the previous round's model p_t."""
    from lit_align.losses.specs import preference_loss_spec

    lam = 0.1
    real, generated, real_t, generated_t = PC, PR, RC, RR  # policy and previous-round log-probs of y and y'
    spec = preference_loss_spec("sigmoid", beta=lam)  # what recipes/spin.yaml trains with (sft_weight 0: this alone)
    lengths = torch.tensor([3, 3, 3])
    out = spec(_t(real), _t(generated), lengths, lengths, _t(real_t), _t(generated_t))
    by_hand = [
        math.log(1 + math.exp(-lam * ((real[i] - real_t[i]) - (generated[i] - generated_t[i])))) for i in range(3)
    ]
    assert out.loss.item() == pytest.approx(sum(by_hand) / 3, abs=1e-9)
