"""FSDP2 sharding of every model role (policy, reference, value model, value head) through Lightning.

:class:`FSDP2Strategy` is Lightning's ``ModelParallelStrategy`` used for pure data-parallel sharding: every process
holds a shard of every role, so the objectives themselves stay unaware of sharding (their ``configure_model``
builds whole models; the strategy shards what it built, before the optimizer is created). It runs on GPUs over
NCCL and on CPU over gloo (tests):

    lit-align fit --config recipes/dpo.yaml --config configs/strategy/fsdp.yaml

Roles are found as the module's direct children that hold parameters; inside each, every transformer block (the
classes a Hugging Face model lists in ``_no_split_modules``) becomes its own FSDP unit, then the role itself.
Frozen roles (the reference) are sharded too and never receive gradients.

With ``ram_efficient_loading`` (the default) only rank 0 reads weights: the other processes build their models as
meta-device skeletons (:func:`lit_align.roles.models.skeletons`), shard them, and receive rank 0's values shard by
shard (``set_model_state_dict(..., broadcast_from_rank0=True)``), so no process but rank 0 ever holds a whole model.
4-bit (QLoRA) roles load on every process, as they quantise while they load.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from lightning import LightningModule, Trainer
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor
from transformers import PreTrainedModel

from lit_align.errors import LitAlignError
from lit_align.roles.models import Finetune, Head, ModelSpec, is_skeleton, load_policy, skeletons
from lit_align.roles.reference import Reference
from lit_align.runtime.checkpoint_io import PARTIAL_PREFIX, fsync_folder

MixedPrecision = Literal["bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class FSDP2Strategy(ModelParallelStrategy):
    """Shard every role of a lit-align objective with FSDP2 across all processes (data parallel).

    Args:
        mixed_precision: Compute in ``bf16`` or ``fp16`` with float32 master weights and float32 gradient
            reduction (FSDP2's ``MixedPrecisionPolicy``); None computes in the weights' dtype. Keep the Trainer's
            ``precision`` at ``32-true`` when you set this.
        activation_checkpointing: Recompute each transformer block's activations in the backward pass of the
            trainable roles (Hugging Face gradient checkpointing), trading compute for memory.
        reshard_after_forward: Free gathered weights after each block's forward (less memory, one more
            all-gather in the backward pass).
        ram_efficient_loading: Only rank 0 reads the weights; the other processes build meta-device skeletons and
            receive rank 0's values after sharding (accelerate's ``fsdp_cpu_ram_efficient_loading``). False: every
            process loads every model whole before sharding.
        save_distributed_checkpoint: Each process writes its own shard (a checkpoint is then a folder of
            ``*.distcp`` files; ``lit-align export`` turns it into a Hugging Face folder, and
            ``python -m torch.distributed.checkpoint.format_utils dcp_to_torch FOLDER FILE`` into one file of
            weights and optimizer states). False gathers full weights on rank 0 and writes one file.
        process_group_backend: ``nccl``, ``gloo``...; None picks by device.
        timeout: Collective timeout.

    """

    def __init__(
        self,
        mixed_precision: MixedPrecision | None = None,
        activation_checkpointing: bool = False,
        reshard_after_forward: bool = True,
        ram_efficient_loading: bool = True,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = timedelta(minutes=30),
    ) -> None:
        """See the class docstring."""
        super().__init__(
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        if mixed_precision is not None and mixed_precision not in _DTYPES:
            raise LitAlignError(f"trainer.strategy.init_args.mixed_precision: '{mixed_precision}' is not bf16 or fp16")
        self.mixed_precision = mixed_precision
        self.activation_checkpointing = activation_checkpointing
        self.reshard_after_forward = reshard_after_forward
        self.ram_efficient_loading = ram_efficient_loading

    def setup_environment(self) -> None:
        """Use every process for data-parallel sharding (no tensor parallelism)."""
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    def save_checkpoint(self, checkpoint: dict, filepath: str | Path, storage_options: object | None = None) -> None:
        """Write a folder of shards under a temporary name, then put it in place of ``filepath`` with renames.

        A process killed while the shards are written leaves the previous checkpoint as it was (Lightning's own
        save writes into the existing folder, so a kill there leaves old and new shards mixed). The swap is two
        renames by rank 0 (old folder aside, new folder in place) before the old one is deleted.
        """
        path = Path(self.broadcast(str(filepath)))
        if not self._save_distributed_checkpoint or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)  # one file, through the CheckpointIO
            return
        token = self.broadcast(uuid.uuid4().hex)  # one temporary name for every rank
        partial = path.with_name(f"{PARTIAL_PREFIX}{token}")
        super().save_checkpoint(checkpoint, partial)
        self.barrier("lit_align.runtime.sharding.save_checkpoint")  # every rank has written its shard
        if self.global_rank == 0:
            aside = path.with_name(f"{PARTIAL_PREFIX}{token}-old")
            if path.is_dir():
                path.rename(aside)
            elif path.exists():
                path.unlink()
            partial.rename(path)
            fsync_folder(path.parent)
            shutil.rmtree(aside, ignore_errors=True)
        self.barrier("lit_align.runtime.sharding.save_checkpoint.done")

    @contextmanager
    def tensor_init_context(self, empty_init: bool | None = None) -> Iterator[None]:
        """Around ``configure_model``: with ``ram_efficient_loading``, ranks other than 0 build skeletons."""
        with super().tensor_init_context(empty_init), skeletons(self.ram_efficient_loading and self.global_rank != 0):
            yield

    def setup(self, trainer: Trainer) -> None:
        """Shard the roles that ``configure_model`` built, then let Lightning create the optimizer over the shards."""
        shard_roles(
            self.lightning_module,
            self.device_mesh["data_parallel"],
            mixed_precision=self.mixed_precision,
            activation_checkpointing=self.activation_checkpointing,
            reshard_after_forward=self.reshard_after_forward,
            from_rank0=self.ram_efficient_loading,
            device=self.root_device,
        )
        super().setup(trainer)


def roles(module: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    """The roles of an objective: its children that hold parameters (policy, value model, value head...).

    A reference component counts by the model it holds: it runs that model directly, so the model is what is sharded.
    """
    for name, child in module.named_children():
        if isinstance(child, Reference):
            name, child = f"{name}.model", child.model
        if child is not None and next(child.parameters(), None) is not None:
            yield name, child


def transformer_blocks(role: torch.nn.Module) -> list[torch.nn.Module]:
    """Modules of a role whose class a Hugging Face model names in ``_no_split_modules`` (its decoder layers)."""
    names: set[str] = set()
    for sub in role.modules():
        if isinstance(sub, PreTrainedModel):
            names.update(sub._no_split_modules or [])
    return [sub for sub in role.modules() if type(sub).__name__ in names]


def shard_roles(
    module: LightningModule,
    mesh: DeviceMesh,
    *,
    mixed_precision: MixedPrecision | None = None,
    activation_checkpointing: bool = False,
    reshard_after_forward: bool = True,
    from_rank0: bool = False,
    device: torch.device | None = None,
) -> list[str]:
    """Apply ``fully_shard`` to every transformer block of every role, then to the role; return the role names.

    Args:
        module: The objective, after ``configure_model``.
        mesh: The data-parallel mesh.
        mixed_precision: See :class:`FSDP2Strategy`.
        activation_checkpointing: See :class:`FSDP2Strategy`.
        reshard_after_forward: See :class:`FSDP2Strategy`.
        from_rank0: Every weight and buffer takes rank 0's value after sharding; other ranks may hold skeletons
            (meta tensors), which are materialised on ``device`` first. 4-bit roles are left as each rank loaded them.
        device: Where skeleton shards and buffers are materialised (the process's device).

    Raises:
        LitAlignError: A trainable parameter is left unsharded (its gradients would not be reduced across
            processes), e.g. a parameter registered directly on the LightningModule instead of inside a role; or,
            with ``from_rank0``, a rank built a model whose weights differ in name, shape or dtype from rank 0's.

    """
    policy = MixedPrecisionPolicy()
    if mixed_precision is not None:
        policy = MixedPrecisionPolicy(param_dtype=_DTYPES[mixed_precision], reduce_dtype=torch.float32)
    kwargs = {"mesh": mesh, "mp_policy": policy, "reshard_after_forward": reshard_after_forward}
    names = []
    for name, role in roles(module):
        broadcast = from_rank0 and not _quantized(role)
        full = _rank0_state(role, mesh, name) if broadcast else {}
        if not broadcast:
            broadcast_trainable(role, mesh)
        if activation_checkpointing and any(p.requires_grad for p in role.parameters()):
            for sub in role.modules():
                if isinstance(sub, PreTrainedModel) and sub.supports_gradient_checkpointing:
                    sub.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                    break
        for block in transformer_blocks(role):
            fully_shard(block, **kwargs)
        fully_shard(role, **kwargs)
        if hasattr(role, "generate"):
            # generate() calls the inner model, not the role's forward: gather the role's own weights around it.
            register_fsdp_forward_method(role, "generate")
        if broadcast:
            if is_skeleton(role):
                role.to_empty(device=device)
            options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
            set_model_state_dict(role, full, options=options)
        names.append(name)
    if from_rank0:
        broadcast_buffers(module, mesh, device)
        left = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if _local(t).is_meta]
        if left:
            raise LitAlignError(f"FSDP2Strategy: weights still unfilled after loading from rank 0: {left[:3]}")
    loose = [n for n, p in module.named_parameters() if p.requires_grad and not isinstance(p, DTensor)]
    if loose:
        raise LitAlignError(
            f"FSDP2Strategy: trainable parameters outside any model role cannot be sharded: {loose[:3]}"
        )
    return names


def _quantized(role: torch.nn.Module) -> bool:
    """True when the role holds bitsandbytes 4-bit layers (loaded and quantised on every rank)."""
    return any(type(sub).__name__ == "Linear4bit" for sub in role.modules())


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _rank0_state(role: torch.nn.Module, mesh: DeviceMesh, name: str) -> dict[str, torch.Tensor]:
    """Rank 0's whole state dict of ``role`` before sharding (empty on other ranks).

    Every rank must have built the same weights (names, shapes, dtypes): a mismatch would be copied over silently.
    """
    state = role.state_dict()
    layout = [(k, tuple(v.shape), str(v.dtype)) for k, v in state.items()]
    layouts: list = [None] * mesh.size()
    dist.all_gather_object(layouts, layout, group=mesh.get_group())
    for rank, theirs in enumerate(layouts):
        if theirs != layouts[0]:
            diff = next((a, b) for a, b in zip(layouts[0] + [None], theirs + [None], strict=False) if a != b)
            raise LitAlignError(
                f"FSDP2Strategy: rank {rank} built '{name}' unlike rank 0 (rank 0 {diff[0]}, rank {rank} {diff[1]}); "
                "set trainer.strategy.init_args.ram_efficient_loading: false to load the model on every rank"
            )
    return state if mesh.get_local_rank() == 0 else {}


def broadcast_buffers(module: torch.nn.Module, mesh: DeviceMesh, device: torch.device | None) -> None:
    """Give every rank rank 0's values of every buffer of ``module`` (materialising skeleton ones on ``device``).

    Buffers are not sharded and not all are in the state dict (rotary frequencies are non-persistent), so
    ``set_model_state_dict`` leaves skeleton ones unfilled.
    """
    group = mesh.get_group()
    with torch.no_grad():
        for name, buffer in list(module.named_buffers()):
            owner, _, attr = name.rpartition(".")
            if buffer.is_meta:
                buffer = module.get_submodule(owner)._buffers[attr] = torch.empty_like(buffer, device=device)
            staged = buffer.to(device) if device is not None else buffer
            dist.broadcast(staged, src=dist.get_global_rank(group, 0), group=group)
            if staged is not buffer:
                buffer.copy_(staged)


def broadcast_trainable(role: torch.nn.Module, mesh: DeviceMesh) -> None:
    """Give every rank rank 0's values of the role's trainable parameters, before sharding.

    ``fully_shard`` keeps each rank's own slice of what that rank holds, so ranks that initialised a new weight
    (LoRA adapters, a reward or value head) from different random states would otherwise train a patchwork of two
    initialisations. Frozen weights come from the same files on every rank and are left alone. (DDP does the same
    broadcast when it wraps a model; FSDP1 had ``sync_module_states``.)
    """
    group = mesh.get_group()
    with torch.no_grad():
        for param in role.parameters():
            if param.requires_grad:
                dist.broadcast(param.data, src=dist.get_global_rank(group, 0), group=group)


def is_sharded(model: torch.nn.Module) -> bool:
    """True when the model's parameters are FSDP2 shards (DTensors)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's complete state dict on CPU; a collective when sharded (call it on every rank).

    Ranks other than 0 get an empty dict when the model is sharded.
    """
    if not is_sharded(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def unsharded_copy(role: torch.nn.Module, spec: ModelSpec, head: Head = "causal_lm") -> torch.nn.Module | None:
    """The role itself when it is not sharded; otherwise a whole copy on rank 0 (None on other ranks).

    The copy is rebuilt from ``spec`` on CPU (with its adapter under LoRA/QLoRA) and gets the gathered weights:
    every trainable one, and under full fine-tuning every one. Call it on every rank: gathering is a collective.
    """
    if not is_sharded(role):
        return role
    state = full_state_dict(role)
    if not state:
        return None
    copy = load_policy(spec, head=head)
    if Finetune(spec.finetune).has_adapter:  # the base is what spec loads; only the adapter (and a new head) trained
        trained = {n for n, p in role.named_parameters() if p.requires_grad}
        state = {k: v for k, v in state.items() if k in trained}
    missing, unexpected = copy.load_state_dict(state, strict=False)
    if unexpected or (missing and not Finetune(spec.finetune).has_adapter):
        raise LitAlignError(f"cannot rebuild the sharded policy: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return copy
