"""Pure loss functions, one file per family (torch only)."""

from lit_align.losses.sft import SFTLossOutput, sft_loss

__all__ = ["SFTLossOutput", "sft_loss"]
