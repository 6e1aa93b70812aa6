"""Preference-loss specs against the published formulas on a fixed batch of summed log-probs and lengths.

Hand derivations use PC/PR/RC/RR (summed log-probs) and LC/LR (completion lengths) below.
"""

import math
import typing

import pytest
import torch

from lit_align.errors import LitAlignError
from lit_align.losses.specs import PREFERENCE_LOSSES, LossType, preference_loss_spec

PC = [-2.0, -12.0, -1.5]
PR = [-4.0, -3.0, -2.5]
RC = [-3.0, -6.0, -1.0]
RR = [-3.0, -2.0, -3.5]
LC = [2, 4, 1]
LR = [4, 2, 5]


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def _logsig(x):
    return -math.log1p(math.exp(-x))


def _call(spec, with_reference=True):
    refs = (_t(RC), _t(RR)) if with_reference else ()
    return spec(_t(PC), _t(PR), torch.tensor(LC), torch.tensor(LR), *refs)


def test_the_literal_lists_every_spec():
    assert set(typing.get_args(LossType)) == set(PREFERENCE_LOSSES)


def test_capabilities():
    needs = {name: spec.needs_reference for name, spec in PREFERENCE_LOSSES.items()}
    assert needs == {n: n not in ("simpo", "cpo", "cpo_simpo", "orpo") for n in PREFERENCE_LOSSES}
    normalised = {n for n, s in PREFERENCE_LOSSES.items() if s.length_normalized}
    assert normalised == {"ipo", "simpo", "cpo_simpo", "orpo"}
    assert {n for n, s in PREFERENCE_LOSSES.items() if s.sft_weight} == {"rpo", "cpo", "cpo_simpo", "orpo"}


def test_ipo_is_length_normalised_by_default_and_summed_as_an_option():
    """IPO authors' code / TRL: h = (pi_c - ref_c) / |y_c| - (pi_r - ref_r) / |y_r|; loss = (h - 1 / (2 beta))^2."""
    beta = 0.25
    normalised = _call(preference_loss_spec("ipo", beta=beta))
    h = [(PC[i] - RC[i]) / LC[i] - (PR[i] - RR[i]) / LR[i] for i in range(3)]
    assert normalised.losses.tolist() == pytest.approx([(x - 1 / (2 * beta)) ** 2 for x in h], abs=1e-12)
    assert normalised.loss.item() == pytest.approx(sum((x - 2) ** 2 for x in h) / 3, abs=1e-12)
    assert normalised.nll is None
    summed = _call(preference_loss_spec("ipo", beta=beta, length_normalized=False))
    h_sum = [(PC[i] - RC[i]) - (PR[i] - RR[i]) for i in range(3)]
    assert summed.losses.tolist() == pytest.approx([(x - 2) ** 2 for x in h_sum], abs=1e-12)
    assert summed.loss.item() != pytest.approx(normalised.loss.item(), rel=0.1)  # the two forms really differ
    # implicit rewards from the normalised log-ratios, as TRL reports them
    assert normalised.chosen_rewards.tolist() == pytest.approx([beta * (PC[i] - RC[i]) / LC[i] for i in range(3)])


def test_orpo_nll_is_the_token_mean_over_the_batch_as_in_the_official_code():
    """Official ORPO: loss = mean_b(NLL - lambda * log sigmoid(log odds ratio)), NLL the causal-LM loss of the chosen
    rows = -sum_b PC_b / sum_b |y_c,b| (one token mean over the batch), odds on per-token means."""
    lam = 0.2
    out = _call(preference_loss_spec("orpo", beta=lam), with_reference=False)

    def log_odds(mean):
        return mean - math.log1p(-math.exp(mean))

    ratio = [-lam * _logsig(log_odds(PC[i] / LC[i]) - log_odds(PR[i] / LR[i])) for i in range(3)]
    nll = -sum(PC) / sum(LC)  # 15.5 / 7
    assert out.nll.item() == pytest.approx(nll, abs=1e-12)
    assert out.loss.item() == pytest.approx(nll + sum(ratio) / 3, abs=1e-12)
    per_sequence = -sum(PC[i] / LC[i] for i in range(3)) / 3  # a mean of per-pair NLLs: 11 / 6, not 15.5 / 7
    assert abs(per_sequence - nll) > 0.1


def test_rpo_and_cpo_add_the_nll_with_either_normalisation():
    beta = 0.1
    rpo = _call(preference_loss_spec("rpo", beta=beta))
    dpo = [-_logsig(beta * ((PC[i] - RC[i]) - (PR[i] - RR[i]))) for i in range(3)]
    assert rpo.loss.item() == pytest.approx(sum(dpo) / 3 - sum(PC) / sum(LC), abs=1e-12)
    per_sequence = _call(preference_loss_spec("rpo", beta=beta, sft_weight=0.5, nll_normalization="sequence"))
    nll = -sum(PC[i] / LC[i] for i in range(3)) / 3
    assert per_sequence.loss.item() == pytest.approx(sum(dpo) / 3 + 0.5 * nll, abs=1e-12)
    # CPO (Xu et al., 2024): -log sigmoid(beta (log pi_c - log pi_r)) on summed log-probs, beta 0.1, plus the NLL
    cpo = _call(preference_loss_spec("cpo"), with_reference=False)
    cpo_terms = [-_logsig(0.1 * (PC[i] - PR[i])) for i in range(3)]
    assert cpo.loss.item() == pytest.approx(sum(cpo_terms) / 3 - sum(PC) / sum(LC), abs=1e-12)
    cpo_simpo = _call(preference_loss_spec("cpo_simpo", beta=2.0, simpo_gamma=0.5), with_reference=False)
    simpo = [-_logsig(2.0 * PC[i] / LC[i] - 2.0 * PR[i] / LR[i] - 0.5) for i in range(3)]
    assert cpo_simpo.loss.item() == pytest.approx(sum(simpo) / 3 - sum(PC) / sum(LC), abs=1e-12)
    plain = _call(preference_loss_spec("simpo", beta=2.0, simpo_gamma=0.5), with_reference=False)
    assert plain.loss.item() == pytest.approx(sum(simpo) / 3, abs=1e-12)


def test_nll_gradient_raises_the_chosen_likelihood():
    pc = torch.tensor([-1.0], requires_grad=True)
    spec = preference_loss_spec("orpo")
    spec(pc, torch.tensor([-1.0]), torch.tensor([1]), torch.tensor([1])).loss.backward()
    assert pc.grad.item() < 0


def test_unknown_values_are_refused_with_the_config_key():
    with pytest.raises(LitAlignError, match=r"model.init_args.simpo_gamma: loss_type 'sigmoid' does not use it"):
        preference_loss_spec("sigmoid", simpo_gamma=0.3)
    with pytest.raises(LitAlignError, match=r"model.init_args.loss_type: unknown 'dpo'"):
        preference_loss_spec("dpo")
    with pytest.raises(LitAlignError, match=r"sft_weight: must be >= 0"):
        preference_loss_spec("sigmoid", sft_weight=-1.0)
    with pytest.raises(LitAlignError, match=r"beta: must be > 0"):
        preference_loss_spec("sigmoid", beta=0.0)
    with pytest.raises(LitAlignError, match=r"label_smoothing: must be in \[0, 0.5\) for 'robust'"):
        preference_loss_spec("robust", label_smoothing=0.5)
    with pytest.raises(LitAlignError, match=r"nll_normalization: has no effect without sft_weight"):
        preference_loss_spec("sigmoid", nll_normalization="sequence")
    assert preference_loss_spec("robust").params == {"beta": 0.1, "label_smoothing": 0.1}
    assert preference_loss_spec("robust", label_smoothing=None).params["label_smoothing"] == 0.1  # None: default
