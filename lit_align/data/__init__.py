"""Data shapes as Lightning data modules, plus the sources, templates and collation they share."""

from lit_align.data.binary import BinaryDataModule
from lit_align.data.pairwise import PairwiseDataModule
from lit_align.data.prompt import PromptDataModule
from lit_align.data.sft import SFTDataModule
from lit_align.data.sources import DataSource
from lit_align.data.stepwise import StepwiseDataModule

__all__ = [
    "BinaryDataModule",
    "DataSource",
    "PairwiseDataModule",
    "PromptDataModule",
    "SFTDataModule",
    "StepwiseDataModule",
]
