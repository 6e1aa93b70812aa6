"""PPO and online DPO on the tiny model: roles, metrics, pairing and reward-model scoring."""

import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import DataSource, PromptDataModule
from lit_align.errors import LitAlignError
from lit_align.objectives import PPO, OnlineDPO
from lit_align.rewards import RewardSpec
from lit_align.roles.models import ModelSpec
from lit_align.rollout import SamplingConfig

ARITH = [RewardSpec("lit_align.rewards.arithmetic_answer")]
SAMPLING = SamplingConfig(max_new_tokens=6)


def _fit(tmp_path, module, max_steps, batches):
    dm = PromptDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=2, eval_batch_size=4)
    trainer = Trainer(
        max_steps=max_steps,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=batches,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, dm)
    with open(next(tmp_path.glob("lightning_logs/version_0/metrics.csv"))) as f:
        return list(csv.DictReader(f))


def test_ppo_with_value_head_trains_and_logs(tmp_path):
    torch.manual_seed(0)
    numeric = [RewardSpec("lit_align.rewards.regex_format", kwargs={"pattern": r"-?\d+"})]  # mostly 1: values learn
    module = PPO(rewards=numeric, sampling=SAMPLING, ppo_epochs=2, mini_batch_size=1, target_kl=0.1)
    rows = _fit(tmp_path, module, max_steps=8, batches=2)  # 2 batches x 2 epochs x 2 minibatches
    assert module.reference.model is not None and module.value_backbone is None
    assert module.value_head.summary.weight.abs().sum() > 0  # the value head learned something
    names = set(rows[0])
    for name in ("loss/policy", "loss/value", "value/explained_variance", "kl", "kl_coef", "reward", "distinct_2"):
        assert f"train/{name}" in names, name
    assert "val/reward" in names
    assert module.kl_coef != 0.05  # adapted toward target_kl


def test_ppo_with_separate_value_model_under_lora(tmp_path):
    lora = ModelSpec(finetune="lora", lora_r=4)
    module = PPO(policy=lora, value_model=ModelSpec(), rewards=ARITH, sampling=SAMPLING, ppo_epochs=1)
    module.configure_model()
    critic = {n: p.detach().clone() for n, p in module.value_backbone.named_parameters()}
    _fit(tmp_path, module, max_steps=1, batches=1)
    assert module.reference.kind == "adapter" and module.reference.model is None  # the adapter-disabled policy
    # the values come from the separate critic: its own weights received the value loss's gradient and moved
    moved = [n for n, p in module.value_backbone.named_parameters() if not torch.equal(p, critic[n])]
    assert moved and all(not n.startswith("lora") for n in moved)


def test_online_dpo_trains_on_sampled_pairs(tmp_path):
    torch.manual_seed(0)
    module = OnlineDPO(
        rewards=ARITH, sampling=SamplingConfig(max_new_tokens=6, temperature=1.5), completions_per_prompt=4
    )
    rows = _fit(tmp_path, module, max_steps=3, batches=3)
    names = set().union(*(r.keys() for r in rows))
    for name in ("rewards/margins", "rewards/accuracies", "kl", "pairs_per_prompt", "reward", "timing/generation"):
        assert f"train/{name}" in names, name
    assert module.reference.model is not None


def test_ppo_center_scores_gives_each_prompt_a_zero_mean_score(tmp_path, monkeypatch):
    import lit_align.objectives.ppo as ppo_module

    seen = []
    original = ppo_module.kl_shaped_rewards

    def spy(scores, *args, **kwargs):
        seen.append(scores.detach().clone())
        return original(scores, *args, **kwargs)

    monkeypatch.setattr(ppo_module, "kl_shaped_rewards", spy)
    varied = [RewardSpec("tests.objectives.test_online.text_length")]  # differs between sampled completions
    hot = SamplingConfig(max_new_tokens=6, temperature=3.0)  # varied samples within each prompt
    module = PPO(rewards=varied, sampling=hot, completions_per_prompt=3, center_scores=True, ppo_epochs=1)
    _fit(tmp_path, module, max_steps=1, batches=1)
    grouped = seen[0].view(-1, 3)
    assert grouped.abs().sum() > 0 and torch.allclose(grouped.mean(-1), torch.zeros(len(grouped)), atol=1e-6)
    with pytest.raises(LitAlignError, match="center_scores: needs completions_per_prompt > 1"):
        PPO(rewards=varied, center_scores=True)


def text_length(prompts, completions, **columns):
    """A reward that differs between different samples: the sum of the completion's character codes / 100."""
    return [sum(map(ord, c if isinstance(c, str) else c[0]["content"])) / 100 for c in completions]
