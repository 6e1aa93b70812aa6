"""Policy and reference log-probs for the offline preference objectives: forward passes and reference modes."""

from __future__ import annotations

from enum import StrEnum

import torch
from lightning import LightningModule
from torch.distributed.tensor import DTensor
from torch.utils.data import DataLoader

from lit_align.errors import LitAlignError
from lit_align.modeling import Finetune, ModelSpec, build_reference, load_policy, reference_mode
from lit_align.ops.logprobs import sequence_logps


class ReferenceMode(StrEnum):
    """Where reference log-probs come from."""

    AUTO = "auto"  # adapter under LoRA/QLoRA, copy otherwise
    COPY = "copy"  # a frozen copy of the initial policy, held during training
    ADAPTER = "adapter"  # the policy with its LoRA adapter disabled
    PRECOMPUTED = "precomputed"  # computed once before training for every row, then no reference is held

    def resolve(self, finetune: Finetune) -> ReferenceMode:
        """Replace ``auto`` by the mode that fits ``finetune``; refuse modes that do not fit it."""
        if self is ReferenceMode.AUTO:
            return ReferenceMode.ADAPTER if finetune.has_adapter else ReferenceMode.COPY
        if self is ReferenceMode.ADAPTER and not finetune.has_adapter:
            raise LitAlignError("model.init_args.reference: 'adapter' needs policy.finetune lora or qlora")
        if self is ReferenceMode.COPY and finetune.has_adapter:
            raise LitAlignError("model.init_args.reference: use 'adapter' under LoRA/QLoRA (no second copy)")
        return self


def policy_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over all rows of a stacked batch.

    Returns:
        Summed completion log-probs and completion token counts of every row. Shapes: (2B,), (2B,)

    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return sequence_logps(logits, batch["labels"])


def reference_logps(policy: torch.nn.Module, reference: torch.nn.Module | None, batch: dict) -> torch.Tensor:
    """Return reference log-probs of every row, shape (2B,): frozen copy, or the policy without its adapter."""
    with reference_mode(policy, reference) as ref:
        return policy_logps(ref, batch)[0]


@torch.no_grad()
def precompute_reference(
    module: LightningModule, loaders: dict[str, DataLoader], reference: torch.nn.Module | None
) -> dict[str, torch.Tensor]:
    """Reference log-probs of every row of every split, computed once before training.

    Each process computes every row, so nothing needs gathering; the cost is one reference pass per split.

    Returns:
        ``{split: tensor}`` with row ``index`` holding the reference log-probs of the stacked rows of that item
        (chosen then rejected for pairs, completion then mismatched completion for KTO). Shape: (N, 2)

    """
    caches = {}
    for split, loader in loaders.items():
        parts = []
        for batch in loader:
            batch = module.transfer_batch_to_device(batch, module.device, 0)
            logps = reference_logps(module.policy, reference, batch)  # (2B,)
            parts.append((batch["index"].cpu(), torch.stack(logps.float().chunk(2), dim=1).cpu()))
        size = sum(len(i) for i, _ in parts)
        cache = torch.zeros(size, 2)
        for index, values in parts:
            cache[index] = values
        caches[split] = cache
    return caches


def load_roles(
    spec: ModelSpec, mode: ReferenceMode, device: torch.device | None
) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """Load the policy and, in ``copy`` mode, its frozen reference copy (None in every other mode)."""
    policy = load_policy(spec, device=device)
    return policy, build_reference(spec, policy) if mode is ReferenceMode.COPY else None


def batch_reference_logps(module: LightningModule, batch: dict, stage: str) -> torch.Tensor:
    """Reference log-probs of a stacked batch from the module's cache or reference role, shape (2B,).

    The module provides ``reference_mode``, ``ref_cache``, ``policy`` and ``reference``.
    """
    if module.reference_mode is ReferenceMode.PRECOMPUTED:
        if stage not in module.ref_cache:
            raise LitAlignError(
                f"model.init_args.reference: 'precomputed' has no reference log-probs for the {stage} split "
                "(they are computed when fit starts); use 'copy' or 'adapter' here"
            )
        cached = module.ref_cache[stage][batch["index"].cpu()].to(module.device)  # (B, 2)
        return torch.cat([cached[:, 0], cached[:, 1]])
    return reference_logps(module.policy, module.reference, batch)


def checkpoint_without_reference(checkpoint: dict, ref_cache: dict[str, torch.Tensor] | None = None) -> None:
    """Drop the frozen reference copy from a Lightning checkpoint; keep the precomputed cache in it when given.

    A sharded checkpoint (FSDP2) keeps the reference: torch.distributed.checkpoint loads it back key for key and
    refuses a checkpoint that lacks one of the module's keys.
    """
    state = checkpoint["state_dict"]
    if not any(isinstance(v, DTensor) for v in state.values()):
        checkpoint["state_dict"] = {k: v for k, v in state.items() if not k.startswith("reference.")}
    if ref_cache is not None:
        checkpoint["ref_cache"] = ref_cache
