"""Training objectives, one LightningModule per family."""

from lit_align.objectives.sft import SFT

__all__ = ["SFT"]
