"""What a run reports while it runs: learning rate, gradient norm, throughput, and plain lines for log files.

:class:`RunStats` is added by the CLI to every run (like ``RNGState``). It logs ``train/lr``, ``train/grad_norm``
(before clipping), ``train/step_time`` (seconds per optimizer step), ``train/tokens_per_s`` (tokens of the batch as
the data module built it: prompts and completions offline, prompts for the online objectives) and
``train/samples_per_s`` (rows, pairs or prompts). When stdout is not a terminal (SLURM, CI, ``> log``) it also
prints one plain line every ``log_every_n_steps`` with the objective's main metrics.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from torch.distributed.tensor import DTensor

GRAD_NORM_ATTR = "_lit_align_grad_norm"
"""Where :func:`record_grad_norm` leaves the norm for :class:`RunStats` (manual optimisation clips before the hook)."""

MAIN_METRICS = (
    "loss",
    "reward",
    "rewards/accuracies",
    "rewards/margins",
    "token_accuracy",
    "kl",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "step_time",
)


def grad_norm(module: torch.nn.Module) -> torch.Tensor | None:
    """Total 2-norm of the gradients of ``module``'s parameters (sharded gradients are reduced), or None."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return None
    norm = torch.nn.utils.get_total_norm(grads)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def record_grad_norm(module: LightningModule) -> None:
    """Keep the gradient norm before clipping, for objectives that clip by hand (manual optimisation)."""
    setattr(module, GRAD_NORM_ATTR, grad_norm(module))


class RunStats(Callback):
    """Log lr, gradient norm, step time and throughput; print plain metric lines when stdout is not a terminal."""

    def __init__(self) -> None:
        """Start with no timing."""
        self._start = 0.0
        self._tokens = self._samples = 0
        self._printed_at = -1

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Print the finished step's line (its metrics are in by now), start the clock, count the batch."""
        step = trainer.global_step
        if self._start and step % max(trainer.log_every_n_steps, 1) == 0:  # not before this run's first step
            self._print(trainer)
        self._start = time.perf_counter()
        self._tokens = self._samples = 0
        if isinstance(batch, dict) and torch.is_tensor(batch.get("attention_mask")):
            self._tokens = int(batch["attention_mask"].sum())
            rows = batch["index"] if torch.is_tensor(batch.get("index")) else batch["attention_mask"]
            self._samples = len(rows)

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Measure the gradient norm (Lightning clips after this hook; manual objectives recorded it before)."""
        recorded = pl_module.__dict__.pop(GRAD_NORM_ATTR, None)
        norm = recorded if recorded is not None else grad_norm(pl_module)
        if norm is not None:
            pl_module.log("train/grad_norm", norm.detach().float(), on_step=True, on_epoch=False, prog_bar=True)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Log the batch's lr, step time and throughput (Lightning keeps every ``log_every_n_steps``-th)."""
        elapsed = time.perf_counter() - self._start
        stats = {"lr": trainer.optimizers[0].param_groups[0]["lr"]} if trainer.optimizers else {}
        if elapsed > 0:
            stats |= {"step_time": elapsed, "tokens_per_s": self._tokens / elapsed}
            stats["samples_per_s"] = self._samples / elapsed
        for name, value in stats.items():
            bar = name in ("lr", "tokens_per_s")
            pl_module.log(f"train/{name}", float(value), on_step=True, on_epoch=False, prog_bar=bar)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The last step's line."""
        self._print(trainer)

    def _print(self, trainer: Trainer) -> None:
        if trainer.is_global_zero and not sys.stdout.isatty() and self._printed_at != trainer.global_step:
            self._printed_at = trainer.global_step
            print(plain_line(trainer), flush=True)


def plain_line(trainer: Trainer) -> str:
    """``step 40/1500 | loss 0.5213 | lr 0.00014 | ...``: the main metrics the trainer has, for log files."""
    metrics = trainer.callback_metrics
    parts = [f"step {trainer.global_step}/{trainer.max_steps if trainer.max_steps > 0 else '?'}"]
    online = "train/reward" in metrics  # their surrogate loss is ~0 by construction: not shown
    for name in MAIN_METRICS:
        value = None if online and name == "loss" else metrics.get(f"train/{name}")
        if value is not None:
            parts.append(f"{name} {float(value):.4g}")
    return " | ".join(parts)


BAR_ORDER = ("reward", "rewards/accuracies", "rewards/margins", "loss", "token_accuracy", "kl", "lr", "grad_norm")
"""The bar shows the objective's main metrics first; online objectives' surrogate loss stays in the CSV."""


def bar_metrics(items: dict[str, Any]) -> dict[str, Any]:
    """The progress bar's metrics: no ``v_num``, the objective's main ones first, short names.

    Online objectives (those that log ``train/reward``) leave ``train/loss`` out: their policy-gradient loss is
    about 0 by construction and says nothing about progress.
    """
    items = {k: v for k, v in items.items() if k != "v_num"}
    online = "train/reward" in items
    rank = {name: i for i, name in enumerate(BAR_ORDER)}

    def key(name: str) -> tuple[bool, int, str]:
        short = name.split("/", 1)[1] if "/" in name else name
        return not name.startswith("train/"), rank.get(short, len(rank)), name

    shown = {k.removeprefix("train/"): items[k] for k in sorted(items, key=key) if not (online and k == "train/loss")}
    if "lr" in shown:
        shown["lr"] = f"{float(shown['lr']):.2e}"  # 1.5e-4 would show as 0.000
    if "tokens_per_s" in shown:
        shown["tokens_per_s"] = f"{float(shown['tokens_per_s']):.0f}"
    return shown


def quiet_progress_bar(trainer: Trainer) -> None:
    """Swap Lightning's default bar for one that shows :func:`bar_metrics` and no ``Epoch 0/-2`` for step runs."""
    for i, callback in enumerate(trainer.callbacks):
        if type(callback) is RichProgressBar:
            trainer.callbacks[i] = RichBar()
        elif type(callback) is TQDMProgressBar:
            trainer.callbacks[i] = TQDMBar()


class RichBar(RichProgressBar):
    """Lightning's rich bar with :func:`bar_metrics`; a run bounded by steps shows ``Epoch N``, not ``N/-2``."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """See :func:`bar_metrics`."""
        return bar_metrics(super().get_metrics(trainer, pl_module))

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 0:
            return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)


class TQDMBar(TQDMProgressBar):
    """Lightning's tqdm bar with :func:`bar_metrics`."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """See :func:`bar_metrics`."""
        return bar_metrics(super().get_metrics(trainer, pl_module))
