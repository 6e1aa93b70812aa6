"""QLoRA (4-bit nf4 base + LoRA) for a reference-based offline objective (DPO) and an online one (GRPO) on CPU."""

import pytest
import torch
from lightning import Trainer

from lit_align.data import DataSource, PairwiseDataModule, PromptDataModule
from lit_align.objectives import DPO, GRPO
from lit_align.roles.models import ModelSpec
from lit_align.rollout import SamplingConfig

QLORA = ModelSpec(finetune="qlora", lora_r=4)


def _trainer(tmp_path, steps):
    return Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )


def _adapters(module):
    return {n: p.detach().clone() for n, p in module.policy.named_parameters() if p.requires_grad}


def test_qlora_dpo_trains_adapters_with_the_adapter_disabled_reference(tmp_path):
    module = DPO(policy=QLORA, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))
    assert module.reference.kind == "adapter"
    module.configure_model()
    before = _adapters(module)
    assert before and all("lora" in n for n in before)
    dm = PairwiseDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=4, max_length=64)
    _trainer(tmp_path, 2).fit(module, dm)
    assert module.reference.model is None  # no second copy: the base with the adapter disabled
    assert any(not p.equal(before[n]) for n, p in module.policy.named_parameters() if p.requires_grad)


def test_qlora_grpo_samples_and_trains(tmp_path):
    torch.manual_seed(0)
    module = GRPO(
        policy=QLORA,
        completions_per_prompt=4,
        sampling=SamplingConfig(max_new_tokens=6),
        log_samples_every_n_steps=0,
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
    )
    module.configure_model()
    before = _adapters(module)
    dm = PromptDataModule(source=DataSource(num_rows=8, num_val_rows=4), batch_size=2)
    _trainer(tmp_path, 2).fit(module, dm)
    assert any(not p.equal(before[n]) for n, p in module.policy.named_parameters() if p.requires_grad)


def _online_data():
    return PromptDataModule(source=DataSource(num_rows=8, num_val_rows=4), batch_size=2)


def _pairs():
    return PairwiseDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=4, max_length=64)


@pytest.mark.parametrize(
    "name",
    ["SFT", "KTO", "SimPO", "ORPO", "RewardModel", "PPO", "OnlineDPO"],
)
def test_qlora_every_other_objective_trains_adapters(tmp_path, name):
    from lit_align import objectives
    from lit_align.data import BinaryDataModule, SFTDataModule
    from lit_align.rewards import RewardSpec

    opt = {"optimizer": lambda p: torch.optim.AdamW(p, lr=1e-3)}
    arith = [RewardSpec("lit_align.rewards.arithmetic_answer")]
    online = {"rewards": arith, "sampling": SamplingConfig(max_new_tokens=6, temperature=1.5), **opt}
    extra = {"PPO": online, "OnlineDPO": online}.get(name, opt)
    module = getattr(objectives, name)(policy=QLORA, **extra)
    module.configure_model()
    assert not hasattr(module, "reference") or module.reference.model is None  # adapter disabled: no second copy
    before = _adapters(module)
    assert before
    data = {
        "SFT": lambda: SFTDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=4),
        "KTO": lambda: BinaryDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=4, max_length=64),
        "PPO": _online_data,
        "OnlineDPO": _online_data,
    }.get(name, _pairs)()
    torch.manual_seed(0)
    _trainer(tmp_path, 2).fit(module, data)
    assert any(not p.equal(before[n]) for n, p in module.policy.named_parameters() if p.requires_grad)


def test_an_inference_forward_leaves_the_4bit_base_trainable():
    """bitsandbytes repacks 4-bit weights on AVX512-BF16 CPUs at the first eval no-grad forward (a validation batch, a
    rollout); from then on gradients stopped at every 4-bit layer. The policy keeps the standard layout: the first
    block's LoRA gradients and the 4-bit weights are the same with or without an inference forward first."""
    from lit_align.roles.models import load_policy

    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])

    def grads(infer_first):
        torch.manual_seed(0)
        policy = load_policy(QLORA)
        weights = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora" not in n}
        if infer_first:
            policy.eval()
            with torch.no_grad():
                policy(input_ids=ids)
            policy.train()
        policy(input_ids=ids, labels=ids).loss.backward()
        same = all(p.detach().equal(weights[n]) for n, p in policy.named_parameters() if "lora" not in n)
        first = next(p for n, p in policy.named_parameters() if "layers.0." in n and "lora_B" in n)  # A gets 0 at B = 0
        return first.grad.clone(), same

    plain, _ = grads(False)
    after, unchanged = grads(True)
    assert plain.abs().sum() > 0 and torch.allclose(after, plain) and unchanged
