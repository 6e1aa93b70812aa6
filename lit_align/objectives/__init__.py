"""Training objectives, one LightningModule per family."""

from lit_align.objectives.dpo import DPO, ORPO, SimPO
from lit_align.objectives.grpo import GRPO
from lit_align.objectives.kto import KTO
from lit_align.objectives.online_dpo import OnlineDPO
from lit_align.objectives.ppo import PPO
from lit_align.objectives.process_reward import ProcessRewardModel
from lit_align.objectives.reward_model import RewardModel
from lit_align.objectives.sft import SFT

__all__ = ["DPO", "GRPO", "KTO", "ORPO", "OnlineDPO", "PPO", "ProcessRewardModel", "RewardModel", "SFT", "SimPO"]
