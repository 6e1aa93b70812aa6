"""Rollout engines: what turns prompts into sampled completion tokens for the online objectives.

An objective never calls a generator directly: its :class:`~lit_align.objectives.online.Sampler` holds one engine,
built from a :class:`RolloutSpec`, and asks it for a :class:`~lit_align.rollout.sampling.Rollout`. Engines that keep
their own copy of the weights (a lower-precision copy, vLLM) are synced with the policy before a rollout whenever an
optimizer step happened since the last sync, so sampling always uses the current weights.

Shape legend: N completions, P prompt length (left-padded), R completion length.
"""

from __future__ import annotations

import copy
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch

from lit_align.domains import OpenUnitInterval, PositiveInt, check_fields
from lit_align.errors import ConfigError
from lit_align.rollout.sampling import Rollout, SamplingConfig, generate_ids, to_rollout
from lit_align.types import PromptBatch

ENGINE_KEY = "model.init_args.rollout"
RolloutDtype = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class RolloutSpec:
    """Which engine samples the rollouts, and in what precision.

    Args:
        engine: ``transformers`` (``generate`` on the policy or on a copy of it), ``vllm`` (a colocated vLLM engine;
            needs the ``vllm`` extra and a GPU), or the import path of a :class:`RolloutEngine` subclass
            (``package.module.Class``, constructed with this spec).
        dtype: ``auto`` samples with the policy itself. ``bfloat16`` / ``float16`` / ``float32`` sample with a copy
            of the policy's weights in that dtype, synced after each optimizer step (transformers), or set vLLM's
            dtype. A bf16 copy roughly halves decode time on CPUs with bf16 matmuls; tokens are then sampled by
            the rounded weights while log-probs are scored by the policy (the usual vLLM-style mismatch).
        gpu_memory_utilization: vLLM only: share of GPU memory its weights and KV cache may take.
        max_model_len: vLLM only: longest prompt + completion it plans for (None: the model's own limit).

    """

    engine: str = "transformers"
    dtype: RolloutDtype = "auto"
    gpu_memory_utilization: OpenUnitInterval = 0.3
    max_model_len: PositiveInt | None = None

    def __post_init__(self) -> None:
        """Refuse values outside their domain (see :mod:`lit_align.domains`) and vLLM settings without vLLM.

        Raises:
            ConfigError: ``gpu_memory_utilization`` or ``max_model_len`` set for the transformers engine, which
                would ignore them.

        """
        check_fields(self)
        if self.engine == "transformers":
            for name, default in (("gpu_memory_utilization", 0.3), ("max_model_len", None)):
                if getattr(self, name) != default:
                    raise ConfigError(f"{ENGINE_KEY}.{name}", "is a vLLM setting: the transformers engine ignores it")


class RolloutEngine(ABC):
    """Samples completions of left-padded prompts; subclasses that hold their own weights implement :meth:`sync`.

    Args:
        spec: The engine's settings.
        model_path: Where the policy was loaded from (engines that load their own copy read it).

    """

    def __init__(self, spec: RolloutSpec, model_path: str | None = None) -> None:
        """See the class docstring."""
        self.spec, self.model_path = spec, model_path
        self.synced_version: int | None = None

    @abstractmethod
    def generate_ids(
        self,
        policy: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sampling: SamplingConfig,
        *,
        pad_token_id: int,
        stop_ids: list[int],
    ) -> torch.Tensor:
        """Completion tokens of each prompt, right-padded with ``pad_token_id``. Shapes: (N, P) -> (N, R)."""

    def sync(self, policy: torch.nn.Module) -> None:  # noqa: B027 (optional hook: engines sampling with the policy)
        """Copy the policy's current weights into the engine (nothing to do when it samples with the policy)."""

    def rollout(
        self,
        policy: torch.nn.Module,
        batch: PromptBatch,
        sampling: SamplingConfig,
        *,
        pad_token_id: int,
        stop_ids: list[int],
        version: int | None = None,
    ) -> Rollout:
        """Sample one completion per row of ``batch``, syncing first if the policy changed since the last sync.

        ``version`` counts the policy's optimizer steps; None always syncs.
        """
        if version is None or version != self.synced_version:
            self.sync(policy)
            self.synced_version = version
        completion_ids = self.generate_ids(
            policy, batch["input_ids"], batch["attention_mask"], sampling, pad_token_id=pad_token_id, stop_ids=stop_ids
        )
        return to_rollout(batch, completion_ids, sampling, pad_token_id=pad_token_id, stop_ids=stop_ids)


class TransformersEngine(RolloutEngine):
    """transformers ``generate`` with the KV cache, on the policy itself or on a copy of it in ``spec.dtype``.

    The copy is made at the first sync (parameters cast, buffers such as rotary frequencies kept as they are) and
    refreshed in place by later syncs; it is not part of the LightningModule, so it is neither checkpointed nor
    optimised. A sharded (FSDP2) or 4-bit policy cannot be copied: use ``dtype: auto`` there.
    """

    def __init__(self, spec: RolloutSpec, model_path: str | None = None) -> None:
        """See :class:`RolloutEngine`."""
        super().__init__(spec, model_path)
        self.copy: torch.nn.Module | None = None

    def sync(self, policy: torch.nn.Module) -> None:
        """Cast the policy's parameters into the copy (made on the first call); nothing for ``dtype: auto``."""
        if self.spec.dtype == "auto":
            return
        if self.copy is None:
            self.copy = _cast_copy(policy, getattr(torch, self.spec.dtype))
        with torch.no_grad():
            for (name, target), source in zip(self.copy.named_parameters(), policy.parameters(), strict=True):
                assert target.shape == source.shape, f"rollout copy of {name} has shape {target.shape}"
                target.copy_(source)

    def generate_ids(
        self,
        policy: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sampling: SamplingConfig,
        *,
        pad_token_id: int,
        stop_ids: list[int],
    ) -> torch.Tensor:
        """``generate`` on the copy when there is one, else on the policy."""
        model = policy if self.copy is None else self.copy
        return generate_ids(model, input_ids, attention_mask, sampling, pad_token_id=pad_token_id, stop_ids=stop_ids)


def _cast_copy(policy: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    for param in policy.parameters():
        kind = type(param).__name__
        if kind in ("DTensor", "Params4bit", "Int8Params") or type(param.data).__name__ == "DTensor":
            raise ConfigError(
                f"{ENGINE_KEY}.dtype",
                f"cannot copy a sharded or quantized policy ({kind} parameters) for rollouts; use dtype: auto",
            )
    model = copy.deepcopy(policy)
    for param in model.parameters():
        param.requires_grad_(False)
        if param.is_floating_point():
            param.data = param.data.to(dtype)
    return model.eval()


def build_engine(spec: RolloutSpec, model_path: str | None = None) -> RolloutEngine:
    """The engine ``spec.engine`` names (``transformers``, ``vllm`` or an import path), constructed with ``spec``.

    Raises:
        ConfigError: The import path does not name a :class:`RolloutEngine` subclass, or vLLM is not installed.

    """
    if spec.engine == "transformers":
        return TransformersEngine(spec, model_path)
    if spec.engine == "vllm":
        from lit_align.rollout.vllm import VLLMEngine

        return VLLMEngine(spec, model_path)
    module_name, _, class_name = spec.engine.rpartition(".")
    try:
        engine_class = getattr(importlib.import_module(module_name), class_name) if module_name else None
    except ImportError as error:
        raise ConfigError(f"{ENGINE_KEY}.engine", f"cannot import {spec.engine!r}: {error}") from error
    if not (isinstance(engine_class, type) and issubclass(engine_class, RolloutEngine)):
        raise ConfigError(
            f"{ENGINE_KEY}.engine",
            f"{spec.engine!r} is not 'transformers', 'vllm' or the import path of a RolloutEngine subclass",
        )
    return engine_class(spec, model_path)


# Checkpoints keep the module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([RolloutSpec])
