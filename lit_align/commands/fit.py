"""``lit-align fit|validate|test|predict``: the LightningCLI that runs any objective with any data module."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment

import lit_align.data  # noqa: F401  (registers the data modules for short class names)
import lit_align.objectives  # noqa: F401  (registers the objectives for short class names)
from lit_align.errors import ConfigError
from lit_align.roles.paths import POLICY_KEY, resolve_model_path
from lit_align.runtime.callbacks import RNGState
from lit_align.runtime.checkpoint_io import checkpoint_problem, guard_checkpoint_loading, use_atomic_writes
from lit_align.runtime.loggers import placed
from lit_align.runtime.progress import RunStats, quiet_progress_bar


class LitAlignCLI(LightningCLI):
    """LightningCLI with the tokenizer linked to the policy and a CSV log in every run folder."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        """Link values that must agree so they are written once (in the model section)."""
        parser.link_arguments("model.init_args.policy.name_or_path", "data.init_args.tokenizer")
        parser.link_arguments("model.init_args.policy.trust_remote_code", "data.init_args.trust_remote_code")

    def _parse_ckpt_path(self) -> None:
        """Lightning reads ``--ckpt_path``'s hyperparameters first; a bad file is one line here, not a traceback."""
        try:
            super()._parse_ckpt_path()
        except Exception as error:  # noqa: BLE001 (file problems become one line; anything else is re-raised)
            ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
            problem = checkpoint_problem(ckpt_path, "--ckpt_path", error)
            if problem is None:
                raise
            raise problem from error

    def before_instantiate_classes(self) -> None:
        """Check the trainer settings and the policy path before anything loads, naming the key to fix."""
        trainer = self._get(self.config, "trainer")
        check_trainer_settings(trainer)
        if getattr(trainer, "enable_checkpointing", None) is False and getattr(trainer, "callbacks", None):
            # A recipe keeps last.ckpt with a ModelCheckpoint; --trainer.enable_checkpointing false turns it off
            # (Lightning would refuse the combination).
            trainer.callbacks = [c for c in trainer.callbacks if not _is_model_checkpoint(c)]
        name_or_path = self._get(self.config, POLICY_KEY)
        if isinstance(name_or_path, str):
            resolve_model_path(name_or_path, POLICY_KEY)

    def instantiate_classes(self) -> None:
        """Build the classes; a constructor's ``<Class>.<argument>`` error is re-keyed as the user writes it."""
        try:
            super().instantiate_classes()
        except ConfigError as error:
            raise self._rekeyed(error) from error
        except ValueError as error:  # jsonargparse wraps errors of optional sections (data) in a ValueError
            if not isinstance(error.__cause__, ConfigError):
                raise
            raise self._rekeyed(error.__cause__) from error

    def _rekeyed(self, error: ConfigError) -> ConfigError:
        owner, _, rest = error.key.partition(".")
        for section in ("model", "data"):
            class_path = self._get(self.config, f"{section}.class_path") if self.subcommand else None
            if isinstance(class_path, str) and class_path.rsplit(".", 1)[-1] == owner and rest:
                return ConfigError(f"{section}.init_args.{rest}", str(error)[len(error.key) + 2 :])
        return error

    def instantiate_trainer(self, **kwargs) -> Trainer:  # noqa: ANN003 (Lightning's signature)
        """Add a CSV logger in ``default_root_dir``, keep RNG states in checkpoints, write checkpoints atomically."""
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_writes(trainer.strategy)  # a kill during a save never leaves a half-written checkpoint
        guard_checkpoint_loading(trainer.strategy, "--ckpt_path")  # a bad --ckpt_path is one line, not a traceback
        trainer.loggers = [placed(logger, trainer.default_root_dir) for logger in trainer.loggers]
        if not any(isinstance(logger, CSVLogger) for logger in trainer.loggers):  # the user's loggers only
            trainer.loggers = [_csv_logger(trainer), *trainer.loggers]
        if not any(isinstance(callback, RNGState) for callback in trainer.callbacks):
            trainer.callbacks.append(RNGState())  # a resumed run draws the same random numbers
        quiet_progress_bar(trainer)  # the objective's main metrics, no v_num, no "Epoch 0/-2"
        if not any(isinstance(callback, RunStats) for callback in trainer.callbacks):
            trainer.callbacks.append(RunStats())  # lr, grad_norm, throughput; plain lines in log files
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                # One folder for every run into this default_root_dir (not one per logger version), so that
                # --ckpt_path last finds the newest checkpoint of an earlier run.
                callback.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        return trainer

    def before_fit(self) -> None:
        """Refuse a fresh run into a folder that holds a finished one: it would overwrite that run's model."""
        finished = Path(self.trainer.default_root_dir) / "hf_model"
        requeued = SLURMEnvironment.detect() and self.trainer._checkpoint_connector._hpc_resume_path is not None
        if self.config[self.subcommand].get("ckpt_path") is None and finished.exists() and not requeued:
            raise ConfigError(
                "trainer.default_root_dir",
                f"'{self.trainer.default_root_dir}' already holds a finished run ({finished.name}/); continue it with "
                "--ckpt_path last, or give another trainer.default_root_dir",
            )


def _csv_logger(trainer: Trainer) -> CSVLogger:
    """The CSV log every run gets, in the version folder of a logger the user added (else ``logs/version_N``).

    Sharing the folder keeps one version folder per run, whatever loggers are added.
    """
    for other in trainer.loggers:
        save_dir, name = getattr(other, "save_dir", None), getattr(other, "name", None)
        if isinstance(save_dir, str) and isinstance(name, str) and getattr(other, "log_dir", None):
            return CSVLogger(save_dir, name=name, version=other.version)
    return CSVLogger(trainer.default_root_dir, name="logs")


def check_trainer_settings(trainer: Any) -> None:
    """Refuse Trainer values that Lightning accepts but that make a run meaningless or crash later.

    ``max_steps: -5`` trains nothing and exits 0; ``accumulate_grad_batches: 0`` and ``val_check_interval: 0``
    divide by zero mid-run; a negative ``gradient_clip_val`` flips every gradient (ascent).

    Raises:
        ConfigError: Naming the ``trainer.<key>``.

    """

    def get(name: str) -> Any:
        return getattr(trainer, name, None)

    rules = {
        "max_steps": (get("max_steps") in (None, -1) or _int(get("max_steps")) > 0, "-1 (no limit) or > 0"),
        "max_epochs": (get("max_epochs") in (None, -1) or _int(get("max_epochs")) > 0, "-1 (no limit) or > 0"),
        "accumulate_grad_batches": (
            get("accumulate_grad_batches") is None or _int(get("accumulate_grad_batches")) >= 1,
            "an integer >= 1",
        ),
        "log_every_n_steps": (get("log_every_n_steps") is None or _int(get("log_every_n_steps")) >= 1, ">= 1"),
        "gradient_clip_val": (get("gradient_clip_val") is None or _num(get("gradient_clip_val")) >= 0, ">= 0"),
        "check_val_every_n_epoch": (
            get("check_val_every_n_epoch") is None or _int(get("check_val_every_n_epoch")) >= 1,
            "None or >= 1",
        ),
    }
    interval = get("val_check_interval")
    if isinstance(interval, (int, float)) and not isinstance(interval, bool):
        valid = interval >= 1 if isinstance(interval, int) else 0 < interval <= 1
        rules["val_check_interval"] = (valid, "an integer >= 1 (batches) or a fraction in (0, 1] of an epoch")
    for key, (ok, domain) in rules.items():
        if not ok:
            raise ConfigError(f"trainer.{key}", f"must be {domain}, got {get(key)!r}")


def _is_model_checkpoint(callback: Any) -> bool:
    class_path = callback.get("class_path", "") if hasattr(callback, "get") else type(callback).__name__
    return str(class_path).rsplit(".", 1)[-1] == "ModelCheckpoint" or isinstance(callback, ModelCheckpoint)


def _int(value: Any) -> float:
    """The value if it is an integer (not a bool), else -inf so that any range check fails."""
    return value if isinstance(value, int) and not isinstance(value, bool) else float("-inf")


def _num(value: Any) -> float:
    """The value if it is a finite number, else -inf."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else float("-inf")


def run_cli(args: list[str] | None = None, *, run: bool = True) -> LitAlignCLI:
    """Run the LightningCLI on ``args`` (``sys.argv[1:]`` when None); ``run=False`` only builds the classes."""
    return LitAlignCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # Requeued or repeated runs write into the same folder.
        save_config_kwargs={"overwrite": True},
        # The CSV log (no extra install) in the run folder; --print_config shows it. Another logger given instead
        # still gets a CSV log next to it, in its version folder (instantiate_trainer).
        trainer_defaults={"logger": {"class_path": "lit_align.runtime.loggers.RunLog"}},
        auto_configure_optimizers=False,
        # Raise instead of printing the whole usage, so main() can print one line naming the key.
        parser_kwargs={"exit_on_error": False},
        args=args,
        run=run,
    )
