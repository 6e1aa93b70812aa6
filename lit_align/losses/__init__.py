"""Pure loss functions, one file per family (torch only)."""

from lit_align.losses.kto import KTOLossOutput, kto_loss
from lit_align.losses.preference import PreferenceLossOutput, dpo_loss, hinge_loss, ipo_loss, robust_dpo_loss
from lit_align.losses.reference_free import orpo_loss, simpo_loss
from lit_align.losses.reward import bradley_terry_loss, center_penalty
from lit_align.losses.sft import SFTLossOutput, sequence_nll_loss, sft_loss
from lit_align.losses.specs import PREFERENCE_LOSSES, PreferenceLossResult, PreferenceLossSpec, preference_loss_spec

__all__ = [
    "PREFERENCE_LOSSES",
    "PreferenceLossResult",
    "PreferenceLossSpec",
    "preference_loss_spec",
    "KTOLossOutput",
    "PreferenceLossOutput",
    "SFTLossOutput",
    "bradley_terry_loss",
    "center_penalty",
    "dpo_loss",
    "hinge_loss",
    "ipo_loss",
    "kto_loss",
    "orpo_loss",
    "robust_dpo_loss",
    "sequence_nll_loss",
    "sft_loss",
    "simpo_loss",
]
