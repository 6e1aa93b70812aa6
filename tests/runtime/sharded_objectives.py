"""Run by tests/runtime/test_sharding.py under ``torch.distributed.run`` with 2 CPU processes: every objective not
covered there trains 2 steps with its roles sharded by FSDP2Strategy; prints ``trained <name>`` when its trainable
weights moved."""

import sys

import torch
import torch.distributed as dist
from lightning import Trainer
from torch.distributed.device_mesh import init_device_mesh

from lit_align import objectives
from lit_align.data import BinaryDataModule, DataSource, PairwiseDataModule, PromptDataModule, SFTDataModule
from lit_align.rewards import RewardSpec
from lit_align.roles.models import ModelSpec, is_skeleton, load_policy, skeletons
from lit_align.rollout import SamplingConfig
from lit_align.runtime.sharding import FSDP2Strategy, full_state_dict, is_sharded, roles, shard_roles

QLORA = ModelSpec(finetune="qlora", lora_r=4)


def _pairs():
    return PairwiseDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=4, max_length=64)


def _prompts():
    return PromptDataModule(source=DataSource(num_rows=8, num_val_rows=4), batch_size=2)


def _sft():
    return SFTDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=4)


def _binary():
    return BinaryDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=4, max_length=64)


def check_ranks_start_from_rank_zeros_weights() -> None:
    """Ranks that initialise new weights differently (LoRA, heads) all train rank 0's initialisation once sharded."""
    torch.manual_seed(dist.get_rank())  # a different random state on each rank
    module = objectives.SFT(policy=ModelSpec(finetune="lora", lora_r=4))
    module.configure_model()
    rank0 = {n: p.detach().clone() for n, p in module.policy.named_parameters() if p.requires_grad}
    shard_roles(module, init_device_mesh("cpu", (dist.get_world_size(),)))
    whole = full_state_dict(module.policy)
    if dist.get_rank() == 0:
        same = all(torch.equal(whole[n], p) for n, p in rank0.items())
        print(f"start {'rank0' if same else 'mixed'}", flush=True)


def check_only_rank_zero_reads_weights(model: str = ModelSpec.name_or_path) -> None:
    """Under ``skeletons`` on rank 1 (FSDP2Strategy's ram_efficient_loading), rank 1 builds meta-device models and
    ends with rank 0's weights and buffers (rotary frequencies, a reward model's frozen LM head) once sharded."""
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    rank = dist.get_rank()
    spec = ModelSpec(name_or_path=model)
    for name, make in {
        "DPO": lambda: objectives.DPO(policy=spec, reference="copy"),
        "RewardModel": lambda: objectives.RewardModel(policy=spec, sft_weight=1.0),
    }.items():
        with skeletons(rank != 0):
            module = make()
            module.configure_model()
        skeleton = is_skeleton(module)
        shard_roles(module, mesh, from_rank0=True, device=torch.device("cpu"))
        head = "reward" if name == "RewardModel" else "causal_lm"
        whole = full_state_dict(module.policy)
        buffers = [b.clone() for _, b in sorted(module.named_buffers())]
        theirs = [None, None]
        dist.all_gather_object(theirs, buffers)
        if rank == 0:
            loaded = load_policy(spec, head=head).state_dict()
            same = whole.keys() == loaded.keys() and all(torch.equal(whole[k], loaded[k]) for k in loaded)
            if head == "reward":  # the score head starts random on each rank: it must be rank 0's, not the file's
                same = all(torch.equal(whole[k], loaded[k]) for k in loaded if "score" not in k)
            same_buffers = len(theirs[1]) == len(buffers) and all(map(torch.equal, theirs[0], theirs[1]))
            print(f"skeleton-loading {name} filled={same and same_buffers}", flush=True)
        print(f"skeleton-loading {name} rank{rank} skeleton={skeleton}", flush=True)


def main(out: str) -> None:
    opt = {"optimizer": lambda p: torch.optim.AdamW(p, lr=1e-3)}
    online = {
        "rewards": [RewardSpec("lit_align.rewards.arithmetic_answer")],
        "sampling": SamplingConfig(max_new_tokens=6, temperature=1.5),
        **opt,
    }
    cases = {
        "KTO": ({}, _binary),
        "SimPO": ({}, _pairs),
        "ORPO": ({}, _pairs),
        "RewardModel": ({}, _pairs),
        # LM regularisation through a frozen (unsharded) head buffer, and an expanded block sharded like the rest.
        "RewardModel-regularised-expanded": ({"sft_weight": 1.0, "expand_layers": 1}, _pairs),
        "PPO": (online, _prompts),  # value head on the policy: a role of its own
        "PPO-value-model": ({**online, "value_model": ModelSpec()}, _prompts),
        "OnlineDPO": (online, _prompts),
        # QLoRA under FSDP: the 4-bit base is sharded with the adapters; the reference is the adapter disabled.
        "KTO-qlora": ({"policy": QLORA}, _binary),
        "ORPO-qlora": ({"policy": QLORA}, _pairs),
        # Activation checkpointing and bf16 compute with float32 master weights.
        "SFT-checkpointing-bf16": ({}, _sft),
    }
    dist.init_process_group("gloo")  # Lightning finds it initialised and uses it
    check_ranks_start_from_rank_zeros_weights()
    check_only_rank_zero_reads_weights()
    for name, (extra, data) in cases.items():
        module = getattr(objectives, name.split("-")[0])(**{**opt, **extra})
        options = {"activation_checkpointing": True, "mixed_precision": "bf16"} if "bf16" in name else {}
        trainer = Trainer(
            strategy=FSDP2Strategy(**options),
            accelerator="cpu",
            devices=2,
            max_steps=2,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            default_root_dir=out,
        )
        module.configure_model()
        before = {n: p.detach().clone() for n, p in module.policy.named_parameters() if p.requires_grad}
        torch.manual_seed(0)
        trainer.fit(module, data())
        after = full_state_dict(module.policy)  # a collective: every rank takes part, rank 0 gets the weights
        sharded = ",".join(sorted(n for n, role in roles(module) if is_sharded(role)))
        if trainer.is_global_zero:
            moved = max((after[k] - before[k]).abs().max().item() for k in before)
            print(f"trained {name} moved={moved:.2e} sharded={sharded}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2:  # tests/real: the skeleton check alone, on the model given
        dist.init_process_group("gloo")
        check_only_rank_zero_reads_weights(sys.argv[2])
    else:
        main(sys.argv[1])
    # Leave the process group before exit: a rank that exits while gloo's threads still run can abort
    # ("terminate called without an active exception", exit -6; seen once in a fresh-clone run).
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
