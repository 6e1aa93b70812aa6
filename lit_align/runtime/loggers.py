"""The CSV log every run keeps, as the CLI's default logger (so ``--print_config`` shows what will be used)."""

from __future__ import annotations

from lightning.pytorch.loggers import CSVLogger


class RunLog(CSVLogger):
    """``<save_dir>/<name>/version_N/metrics.csv``; ``save_dir`` None means the trainer's ``default_root_dir``.

    Args:
        save_dir: Folder of the log; None puts it in ``trainer.default_root_dir`` (the CLI fills it in).
        name: Subfolder of the versions.
        version: A fixed version number or name; None takes the next free ``version_N``.

    """

    def __init__(self, save_dir: str | None = None, name: str = "logs", version: int | str | None = None) -> None:
        """See the class docstring."""
        super().__init__(save_dir or ".", name=name, version=version)
        self.follows_root_dir = save_dir is None


def placed(logger: object, root_dir: str) -> object:
    """A :class:`RunLog` that follows the run folder, put in ``root_dir``; any other logger unchanged."""
    if isinstance(logger, RunLog) and logger.follows_root_dir:
        return CSVLogger(root_dir, name=logger.name, version=logger._version)
    return logger
