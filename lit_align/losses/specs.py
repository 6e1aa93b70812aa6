"""Preference-loss specifications: one per method, each naming its pure function, defaults and capabilities.

A spec says whether the loss needs a reference, whether log-probs are divided by completion length before the loss,
which hyperparameters its function reads (with their defaults), and whether (and how) an NLL term on the chosen
completions is added. Objectives pick a spec by name from :data:`PREFERENCE_LOSSES`, override its values with
:meth:`PreferenceLossSpec.configure`, and call it; they never branch on the method.

Shape legend: B number of pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, NamedTuple

import torch

from lit_align.errors import LitAlignError
from lit_align.losses.preference import PreferenceLossOutput, dpo_loss, hinge_loss, ipo_loss, robust_dpo_loss
from lit_align.losses.reference_free import orpo_loss, simpo_loss
from lit_align.losses.sft import sequence_nll_loss

NLLNormalization = Literal["token", "sequence"]


class PreferenceLossResult(NamedTuple):
    """What a spec returns for one batch of pairs.

    Attributes:
        loss: Mean preference loss plus ``sft_weight`` times the NLL term. Shape: ()
        nll: The NLL term (detached), or None when the spec adds none. Shape: ()
        losses: Per-pair preference losses (without the NLL term). Shape: (B,)
        chosen_rewards: Implicit reward of each chosen completion (detached). Shape: (B,)
        rejected_rewards: Implicit reward of each rejected completion (detached). Shape: (B,)

    """

    loss: torch.Tensor
    nll: torch.Tensor | None
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


@dataclass(frozen=True)
class PreferenceLossSpec:
    """A preference loss and what it needs.

    Args:
        name: The ``loss_type`` that selects it.
        fn: The pure loss function; reference-based functions take four (B,) log-prob tensors, reference-free two.
        needs_reference: True when ``fn`` takes reference log-probs.
        length_normalized: Divide every log-prob by its completion length before ``fn`` (per-token means).
        params: The hyperparameters ``fn`` reads, keyword by keyword, with their values.
        sft_weight: Weight of the NLL term on the chosen completions (0: none).
        nll_normalization: How the NLL term is normalised (see :func:`lit_align.losses.sft.sequence_nll_loss`).
        reference: Paper and arXiv id, for ``--help`` and the docs.

    """

    name: str
    fn: Callable[..., PreferenceLossOutput]
    needs_reference: bool
    length_normalized: bool = False
    params: Mapping[str, float] = field(default_factory=dict)
    sft_weight: float = 0.0
    nll_normalization: NLLNormalization = "token"
    reference: str = ""

    def configure(self, key: str = "model.init_args", **overrides: float | bool | str | None) -> PreferenceLossSpec:
        """Return a copy with the given values; None keeps the spec's default.

        ``length_normalized``, ``sft_weight`` and ``nll_normalization`` apply to every spec; any other name must be
        one of ``params``.

        Raises:
            LitAlignError: A value the spec does not read (it would be ignored silently), naming ``key.<name>``.

        """
        given = {k: v for k, v in overrides.items() if v is not None}
        common = {k: given.pop(k) for k in ("length_normalized", "sft_weight", "nll_normalization") if k in given}
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise LitAlignError(
                f"{key}.{unknown[0]}: loss_type '{self.name}' does not use it (it reads {sorted(self.params)})"
            )
        if common.get("sft_weight", 0.0) < 0:
            raise LitAlignError(f"{key}.sft_weight: must be >= 0, got {common['sft_weight']}")
        configured = replace(self, params={**self.params, **given}, **common)
        if "nll_normalization" in common and not configured.sft_weight:
            raise LitAlignError(f"{key}.nll_normalization: has no effect without sft_weight > 0")
        params = configured.params
        if params.get("beta", 1.0) <= 0:
            raise LitAlignError(f"{key}.beta: must be > 0, got {params['beta']}")
        smoothing, most = params.get("label_smoothing", 0.0), 0.5 if self.name == "robust" else 1.0
        if not 0 <= smoothing < most:
            raise LitAlignError(f"{key}.label_smoothing: must be in [0, {most}) for '{self.name}', got {smoothing}")
        return configured

    def __call__(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        chosen_lengths: torch.Tensor,
        rejected_lengths: torch.Tensor,
        ref_chosen_logps: torch.Tensor | None = None,
        ref_rejected_logps: torch.Tensor | None = None,
        *,
        nll_normalizer: torch.Tensor | None = None,
    ) -> PreferenceLossResult:
        """Apply the loss to one batch of pairs.

        Args:
            policy_chosen_logps: Summed policy log p(chosen | prompt). Shape: (B,)
            policy_rejected_logps: Summed policy log p(rejected | prompt). Shape: (B,)
            chosen_lengths: Completion tokens of each chosen completion. Shape: (B,)
            rejected_lengths: Completion tokens of each rejected completion. Shape: (B,)
            ref_chosen_logps: Summed reference log p(chosen | prompt), when the spec needs a reference. Shape: (B,)
            ref_rejected_logps: Summed reference log p(rejected | prompt). Shape: (B,)
            nll_normalizer: Token count the NLL divides by under data parallelism
                (:func:`lit_align.runtime.distributed.token_normalizer`); None uses this batch's count.

        Returns:
            :class:`PreferenceLossResult`.

        """
        assert (ref_chosen_logps is not None) == self.needs_reference, (
            f"loss_type '{self.name}' {'needs' if self.needs_reference else 'takes no'} reference log-probs"
        )
        lengths = (chosen_lengths.clamp(min=1), rejected_lengths.clamp(min=1))
        policy = (policy_chosen_logps, policy_rejected_logps)
        reference = (ref_chosen_logps, ref_rejected_logps) if self.needs_reference else ()
        if self.length_normalized:
            policy = tuple(x / n for x, n in zip(policy, lengths, strict=True))
            reference = tuple(x / n for x, n in zip(reference, lengths, strict=False))
        out = self.fn(*policy, *reference, **self.params)
        loss, nll = out.losses.mean(), None
        if self.sft_weight:
            nll = sequence_nll_loss(
                policy_chosen_logps, chosen_lengths, nll_normalizer, normalization=self.nll_normalization
            )
            loss = loss + self.sft_weight * nll
            nll = nll.detach()
        return PreferenceLossResult(loss, nll, out.losses, out.chosen_rewards, out.rejected_rewards)


_DPO = {"beta": 0.1, "label_smoothing": 0.0}
_SIMPO = {"beta": 2.0, "simpo_gamma": 0.5}

PREFERENCE_LOSSES: Mapping[str, PreferenceLossSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            PreferenceLossSpec("sigmoid", dpo_loss, True, params=_DPO, reference="DPO, arXiv:2305.18290"),
            PreferenceLossSpec(
                "robust",
                robust_dpo_loss,
                True,
                params={"beta": 0.1, "label_smoothing": 0.1},
                reference="arXiv:2403.00409",
            ),
            PreferenceLossSpec(
                "ipo", ipo_loss, True, length_normalized=True, params={"beta": 0.1}, reference="arXiv:2310.12036"
            ),
            PreferenceLossSpec("hinge", hinge_loss, True, params={"beta": 0.1}, reference="SLiC/RSO, arXiv:2309.06657"),
            PreferenceLossSpec(
                "rpo", dpo_loss, True, params=_DPO, sft_weight=1.0, reference="DPO + NLL, arXiv:2404.19733"
            ),
            PreferenceLossSpec(
                "simpo", simpo_loss, False, length_normalized=True, params=_SIMPO, reference="arXiv:2405.14734"
            ),
            PreferenceLossSpec(
                "cpo",
                simpo_loss,
                False,
                params={"beta": 0.1, "simpo_gamma": 0.0},
                sft_weight=1.0,
                reference="CPO: -log sigmoid(beta (log pi_c - log pi_r)) on summed log-probs + NLL, arXiv:2401.08417",
            ),
            PreferenceLossSpec(
                "cpo_simpo",
                simpo_loss,
                False,
                length_normalized=True,
                params=_SIMPO,
                sft_weight=1.0,
                reference="CPO-SimPO: SimPO's form + NLL (TRL's CPO with loss_type simpo)",
            ),
            PreferenceLossSpec(
                "orpo",
                orpo_loss,
                False,
                length_normalized=True,
                params={"beta": 0.1},
                sft_weight=1.0,
                reference="arXiv:2403.07691",
            ),
        )
    }
)
"""Every preference loss by ``loss_type``."""

LossType = Literal["sigmoid", "robust", "ipo", "hinge", "rpo", "simpo", "cpo", "cpo_simpo", "orpo"]


def preference_loss_spec(
    loss_type: str, key: str = "model.init_args", **overrides: float | bool | str | None
) -> PreferenceLossSpec:
    """The spec named ``loss_type`` with the given overrides (None keeps a default).

    Raises:
        LitAlignError: An unknown ``loss_type`` or a value the spec does not read, naming the config key.

    """
    if loss_type not in PREFERENCE_LOSSES:
        raise LitAlignError(f"{key}.loss_type: unknown '{loss_type}' (choose from {', '.join(PREFERENCE_LOSSES)})")
    return PREFERENCE_LOSSES[loss_type].configure(key, **overrides)
