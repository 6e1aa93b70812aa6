"""The reference component: where reference log-probs come from, and how the reference is refreshed.

Kinds (``ReferenceSpec.kind``):

- ``none``: no reference (reference-free losses, GRPO without a KL term).
- ``copy``: a frozen copy of the initial policy, held during training.
- ``adapter``: the policy with its LoRA adapter disabled (LoRA/QLoRA; no second copy of the weights).
- ``model``: a separate frozen model, ``ReferenceSpec.model`` (TRL's ``ref_model``), e.g. the SFT checkpoint when
  the policy starts from another one.
- ``precomputed``: reference log-probs of every row computed once before training (from the initial policy, or
  from ``ReferenceSpec.model`` when given), then no reference is held. The data module must implement
  :class:`lit_align.types.OrderedSplits`.
- ``auto``: ``adapter`` under LoRA/QLoRA, ``copy`` otherwise (``none`` when the objective needs no reference).

``refresh()`` moves a held reference (``copy`` or ``model``) to the current policy: a hard copy, or a soft update
``ref <- mix * policy + (1 - mix) * ref`` (TR-DPO, Gorbatovski et al., 2024; arXiv:2404.09656). A refreshed
reference is kept in checkpoints, so a resumed run scores against the same one; an unrefreshed copy is left out
(it is rebuilt from the policy's starting weights).

Shape legend: B pairs or rows; stacked batches hold 2B rows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
from lightning import Callback, LightningModule, Trainer
from peft import PeftModel
from torch.distributed.tensor import DTensor

from lit_align.domains import NonNegativeInt, check_fields
from lit_align.errors import LitAlignError
from lit_align.ops.fingerprint import fingerprint
from lit_align.roles.models import Finetune, ModelSpec, load_frozen
from lit_align.roles.scoring import stacked_logps, without_autograd
from lit_align.types import OrderedSplits

ReferenceKind = Literal["auto", "none", "copy", "adapter", "model", "precomputed"]
KEY = "model.init_args.reference"


@dataclass(frozen=True)
class ReferenceSpec:
    """Where an objective's reference log-probs come from.

    Args:
        kind: ``auto``, ``none``, ``copy``, ``adapter``, ``model`` or ``precomputed`` (see the module docstring).
        model: The separate reference for ``model`` (and the model that scores rows for ``precomputed``); any
            ``finetune`` setting (``qlora`` loads it in 4-bit).
        refresh_every: Refresh the reference from the policy every this many optimizer steps (0: never). Needs a held
            reference (``copy`` or ``model``).
        refresh_mix: Weight of the policy in a refresh: 1 copies it (hard), less mixes (soft, TR-DPO's alpha).

    """

    kind: ReferenceKind = "auto"
    model: ModelSpec | None = None
    refresh_every: NonNegativeInt = 0
    refresh_mix: float = 1.0

    def __post_init__(self) -> None:
        """Refuse values outside their domain (see :mod:`lit_align.domains`)."""
        check_fields(self)


class Reference(torch.nn.Module):
    """The reference role of an objective: builds it, computes its log-probs, refreshes and checkpoints it.

    It is a child module of the objective (``self.reference``), so a held reference moves with the module and is
    sharded as a role. :meth:`build` binds it to the policy; objectives then call its methods, return
    :class:`ReferenceHooks` from ``configure_callbacks``, and pass their checkpoints to it.
    """

    def __init__(
        self,
        spec: ReferenceSpec | str = "auto",
        *,
        finetune: str = "full",
        needed: bool = True,
        fixed_rows: bool = True,
        key: str = KEY,
    ) -> None:
        """Resolve ``auto`` and refuse kinds that do not fit the policy's ``finetune`` or the objective.

        Args:
            spec: A :class:`ReferenceSpec`, or just its kind.
            finetune: The policy's ``finetune`` (``full``, ``lora``, ``qlora``).
            needed: False when the objective's loss uses no reference (``auto`` then means ``none``).
            fixed_rows: False for online objectives, whose completions are sampled anew (no ``precomputed``).
            key: Config key named in errors.

        Raises:
            LitAlignError: A kind that cannot work here, naming ``key``.

        """
        super().__init__()
        spec = ReferenceSpec(kind=spec) if isinstance(spec, str) else spec
        self.spec, self.key = spec, key
        self.kind = _resolve(spec, Finetune(finetune), needed, key)
        if self.kind == "precomputed" and not fixed_rows:
            raise LitAlignError(f"{key}: 'precomputed' needs fixed rows; this objective samples new completions")
        self.model: torch.nn.Module | None = None
        self.cache: dict[str, torch.Tensor] = {}  # precomputed: {split: (N, 2)}
        self.refreshes = 0
        self.refreshed_at = 0  # the optimizer step of the last scheduled refresh
        self._policy: tuple[torch.nn.Module, ...] = ()  # bound by build(); a tuple, so it is not a child module

    @property
    def holds_model(self) -> bool:
        """True when a frozen reference model is held during training (``copy`` or ``model``)."""
        return self.kind in ("copy", "model")

    @property
    def policy(self) -> torch.nn.Module:
        """The policy this reference belongs to (bound by :meth:`build`)."""
        if not self._policy:
            raise RuntimeError("Reference.build(policy) was not called (objectives call it in configure_model)")
        return self._policy[0]

    def build(self, policy: torch.nn.Module, device: torch.device | None = None) -> None:
        """Bind the freshly loaded ``policy`` and build the held reference from it (idempotent; ``configure_model``)."""
        self._policy = (policy,)
        if self.model is not None or not self.holds_model:
            return
        if self.kind == "copy":
            self.model = copy.deepcopy(policy).eval().requires_grad_(False)
            return
        self.model = load_frozen(self.spec.model, device=device)
        ours, theirs = _vocab_size(policy), _vocab_size(self.model)
        if theirs < ours:
            raise LitAlignError(
                f"{self.key}.model: '{self.spec.model.name_or_path}' has a vocabulary of {theirs} tokens, the policy "
                f"{ours}: the reference must share the policy's tokenizer"
            )
        if (
            self.spec.refresh_every
            and dict(self.model.named_parameters()).keys() != dict(policy.named_parameters()).keys()
        ):
            raise LitAlignError(
                f"{self.key}.refresh_every: the reference model's weights do not match the policy's one for one "
                "(another architecture, or a LoRA policy): it cannot be refreshed from it"
            )

    @contextmanager
    def use(self) -> Iterator[torch.nn.Module]:
        """Yield the module that computes reference outputs, without autograd.

        That is the policy with its adapter off (``adapter``), or the held reference (``copy``, ``model``). Outputs
        are inference tensors (see :func:`~lit_align.roles.scoring.without_autograd`): ``clone()`` what you keep.
        """
        if self.kind in ("none", "precomputed"):
            raise RuntimeError(f"a '{self.kind}' reference holds no model to run")
        policy = self.policy
        model = policy if self.kind == "adapter" else self.model
        adapter_off = policy.disable_adapter() if self.kind == "adapter" else nullcontext()
        with without_autograd(model), adapter_off:
            yield model

    def logps(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Reference log-probs of every row of a stacked batch (pairs or KTO rows), from the cache or a model.

        Returns:
            Summed completion log-probs. Shape: (2B,)

        """
        if self.kind != "precomputed":
            with self.use() as model:
                logps = stacked_logps(model, batch)[0]
            return logps.clone()  # a plain tensor, usable in the loss's autograd graph
        if stage not in self.cache:
            raise LitAlignError(
                f"{self.key}: 'precomputed' has no reference log-probs for the {stage} split (they are computed when "
                "fit starts); use 'copy' or 'adapter' here"
            )
        cached = self.cache[stage][batch["index"].cpu()].to(batch["input_ids"].device)  # (B, 2)
        return torch.cat([cached[:, 0], cached[:, 1]])

    @torch.no_grad()
    def precompute(self, datamodule: Any, to_device: Callable[[dict], dict]) -> None:
        """For ``precomputed``: score every row of every split once (no-op otherwise, or when already cached).

        Each process scores every row, so nothing needs gathering. ``to_device`` moves a batch where the policy is.

        Raises:
            LitAlignError: The data module does not declare :class:`lit_align.types.OrderedSplits`.

        """
        if self.kind != "precomputed" or self.cache:
            return
        if not isinstance(datamodule, OrderedSplits):
            raise LitAlignError(
                f"{self.key}: 'precomputed' needs a data module with ordered_dataloaders() (PairwiseDataModule, "
                f"BinaryDataModule); {type(datamodule).__name__} has none"
            )
        scorer, device = self.policy, next(self.policy.parameters()).device
        if self.spec.model is not None:
            scorer = load_frozen(self.spec.model, device=device)
        was_training = scorer.training
        scorer.eval()  # no dropout in the cached values
        adapter_off = scorer.disable_adapter() if isinstance(scorer, PeftModel) else nullcontext()
        try:
            with adapter_off:
                for split, loader in datamodule.ordered_dataloaders().items():
                    parts = []
                    for batch in loader:
                        batch = to_device(batch)
                        logps = stacked_logps(scorer, batch)[0]  # (2B,)
                        parts.append((batch["index"].cpu(), torch.stack(logps.float().chunk(2), dim=1).cpu()))
                    cache = torch.zeros(sum(len(i) for i, _ in parts), 2)
                    for index, values in parts:
                        cache[index] = values
                    self.cache[split] = cache
        finally:
            scorer.train(was_training)

    @torch.no_grad()
    def fingerprint(self) -> torch.Tensor | None:
        """A fingerprint of what reference outputs come from (None for ``none``); it changes only with a refresh.

        The held model's weights (``copy``, ``model``), the policy's frozen base weights (``adapter``: everything
        but the LoRA weights) or the cached log-probs (``precomputed``). See :func:`lit_align.ops.fingerprint`.
        """
        if self.kind == "none":
            return None
        if self.kind == "precomputed":
            return fingerprint(self.cache[k] for k in sorted(self.cache))
        if self.kind == "adapter":
            return fingerprint(p for n, p in self.policy.named_parameters() if "lora_" not in n)
        return fingerprint(self.model.parameters()) if self.model is not None else None

    @torch.no_grad()
    def refresh(self, mix: float | None = None) -> None:
        """Move the held reference to the policy: ``ref <- mix * policy + (1 - mix) * ref`` (``mix`` 1: a copy).

        Raises:
            LitAlignError: No reference is held (``none``, ``adapter``, ``precomputed``).

        """
        mix = self.spec.refresh_mix if mix is None else mix
        if not self.holds_model or self.model is None:
            raise LitAlignError(f"{self.key}: a '{self.kind}' reference cannot be refreshed (use copy or model)")
        ours, theirs = dict(self.model.named_parameters()), dict(self.policy.named_parameters())
        if ours.keys() != theirs.keys():
            raise LitAlignError(f"{self.key}: cannot refresh from a policy of another architecture")
        for name, ref in ours.items():
            source = theirs[name].detach().to(ref.dtype)
            ref.copy_(source) if mix == 1.0 else ref.lerp_(source, mix)
        self.refreshes += 1

    def maybe_refresh(self, step: int) -> None:
        """Refresh once each time ``step`` (optimizer steps taken) reaches or passes a multiple of ``refresh_every``.

        :class:`ReferenceHooks` calls it at the start of a batch: a checkpoint written at the end of step k then never
        misses a refresh made at step k, and a run resumed from it refreshes at the same point as an uninterrupted
        one.
        """
        every = self.spec.refresh_every
        # Under manual optimisation a batch can take several optimizer steps, so a multiple may be stepped over.
        if every and step // every > self.refreshed_at // every:
            self.refresh()
            self.refreshed_at = step

    def on_save_checkpoint(self, checkpoint: dict[str, Any], prefix: str = "reference.") -> None:
        """Keep the cache and the refresh count; drop an unrefreshed held reference from the weights.

        A sharded checkpoint (FSDP2) keeps the reference: torch.distributed.checkpoint loads it back key for key and
        refuses a checkpoint that lacks one of the module's keys.
        """
        state = checkpoint["state_dict"]
        if self.refreshes == 0 and not any(isinstance(v, DTensor) for v in state.values()):
            checkpoint["state_dict"] = {k: v for k, v in state.items() if not k.startswith(prefix)}
        checkpoint["reference"] = {
            "kind": self.kind,
            "refreshes": self.refreshes,
            "refreshed_at": self.refreshed_at,
            "cache": self.cache,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any], prefix: str = "reference.") -> None:
        """Restore the cache and refresh count, and complete the state dict's reference weights.

        A refreshed reference's weights load with the state dict; an unrefreshed copy's are filled in from the rebuilt
        one, so the objective loads strictly (a missing policy key is still an error).

        Raises:
            LitAlignError: The checkpoint says the reference was refreshed but holds no reference weights.

        """
        saved = checkpoint.get("reference", {})
        self.cache = saved.get("cache", checkpoint.get("ref_cache", {}))  # ref_cache: before the reference component
        self.refreshes, self.refreshed_at = saved.get("refreshes", 0), saved.get("refreshed_at", 0)
        state = checkpoint.get("state_dict")  # absent when a strategy (FSDP2) loads the weights itself
        if state is None or any(k.startswith(prefix) for k in state):
            return
        if self.refreshes:
            raise LitAlignError("checkpoint: the reference was refreshed but its weights are not in the checkpoint")
        # An unrefreshed copy was left out: put back the one just rebuilt, so the module loads strictly.
        state.update({prefix + k: v for k, v in self.state_dict().items()})


class ReferenceHooks(Callback):
    """The reference's part of a Lightning run, returned by an objective's ``configure_callbacks``.

    Precomputes log-probs when fit starts (``precomputed``) and refreshes on schedule at the start of each batch.
    What a checkpoint keeps is the objective's own ``on_save_checkpoint`` / ``on_load_checkpoint``, which call
    :meth:`Reference.on_save_checkpoint` / :meth:`Reference.on_load_checkpoint`: module hooks also run for
    weights-only checkpoints and ``load_from_checkpoint``, where callbacks are skipped.

    Args:
        reference: The objective's reference component.

    """

    def __init__(self, reference: Reference) -> None:
        self.reference = reference

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score every row once (``precomputed``; a cache restored from a checkpoint is kept)."""
        self.reference.precompute(
            trainer.datamodule, lambda b: pl_module.transfer_batch_to_device(b, pl_module.device, 0)
        )

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Refresh every ``refresh_every`` optimizer steps."""
        self.reference.maybe_refresh(trainer.global_step)


class WithReference:
    """Mixin for a LightningModule that owns ``self.reference``: the reference's callback and checkpoint part.

    ``configure_callbacks`` returns :class:`ReferenceHooks`; ``on_save_checkpoint`` / ``on_load_checkpoint`` hand the
    checkpoint to the reference (module hooks, so they also run for weights-only checkpoints and
    ``load_from_checkpoint``). An objective that keeps more in its checkpoints overrides them and calls ``super()``.
    """

    reference: Reference

    def configure_callbacks(self) -> list[Callback]:
        """The reference's part of the run: precompute when fit starts, scheduled refreshes."""
        return [ReferenceHooks(self.reference)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The reference keeps its cache and refresh count, and its weights only once refreshed."""
        self.reference.on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the reference's cache and refresh count (before the weights load)."""
        self.reference.on_load_checkpoint(checkpoint)


def _resolve(spec: ReferenceSpec, finetune: Finetune, needed: bool, key: str) -> str:
    kind = spec.kind
    if spec.refresh_every < 0 or not 0 < spec.refresh_mix <= 1:
        raise LitAlignError(f"{key}: refresh_every must be >= 0 and refresh_mix in (0, 1]")
    if spec.refresh_mix != 1.0 and not spec.refresh_every:
        raise LitAlignError(f"{key}.refresh_mix: has no effect without refresh_every")
    if not needed:
        if kind not in ("auto", "none") or spec.model is not None or spec.refresh_every:
            raise LitAlignError(f"{key}: this loss uses no reference; remove the key or set it to 'none'")
        return "none"
    if kind == "none":
        raise LitAlignError(f"{key}: this loss needs a reference; 'none' cannot work (use auto)")
    if kind == "auto":
        kind = "adapter" if finetune.has_adapter else "copy"
    if kind == "adapter" and not finetune.has_adapter:
        raise LitAlignError(f"{key}: 'adapter' needs policy.finetune lora or qlora")
    if kind == "model" and spec.model is None:
        raise LitAlignError(f"{key}.model: kind 'model' needs the reference model (name_or_path)")
    if spec.model is not None and kind not in ("model", "precomputed"):
        raise LitAlignError(f"{key}.model: only used with kind 'model' or 'precomputed', not '{kind}'")
    if spec.refresh_every and kind not in ("copy", "model"):
        raise LitAlignError(f"{key}.refresh_every: a '{kind}' reference cannot be refreshed (use copy or model)")
    return kind


def _vocab_size(model: torch.nn.Module) -> int:
    return model.get_input_embeddings().num_embeddings


# Checkpoints keep the module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([ReferenceSpec])
