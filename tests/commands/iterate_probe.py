"""Callbacks that the iterate tests put in a round's fit config."""

import json
from pathlib import Path

from lightning import Callback

from lit_align.ops.fingerprint import fingerprint


class ReferenceProbe(Callback):
    """Write the reference's and the policy's weight fingerprints at fit start and end to ``probe.json``."""

    def _write(self, trainer, pl_module, when):
        path = Path(trainer.default_root_dir) / "probe.json"
        seen = json.loads(path.read_text()) if path.exists() else {}
        if when == "start" and "start" in seen:
            when = "resumed"  # a second fit start in this folder: the run resumed
        seen[when] = {
            "reference": fingerprint(pl_module.reference.model.parameters()).tolist(),
            "policy": fingerprint(pl_module.policy.parameters()).tolist(),
        }
        path.write_text(json.dumps(seen))

    def on_fit_start(self, trainer, pl_module):
        self._write(trainer, pl_module, "start")

    def on_train_start(self, trainer, pl_module):
        path = Path(trainer.default_root_dir) / "probe.json"
        seen = json.loads(path.read_text())
        seen["train_starts_at_step"] = [*seen.get("train_starts_at_step", []), trainer.global_step]
        path.write_text(json.dumps(seen))

    def on_fit_end(self, trainer, pl_module):
        self._write(trainer, pl_module, "end")


class KillOnce(Callback):
    """Raise at ``step`` of the round whose folder is ``round_dir`` while ``flag`` exists (deleting it): a kill."""

    def __init__(self, flag: str, round_dir: str = "round-2", step: int = 2):
        self.flag, self.round_dir, self.step = Path(flag), round_dir, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        here = Path(trainer.default_root_dir).parent.name
        if here == self.round_dir and trainer.global_step == self.step and self.flag.exists():
            self.flag.unlink()
            raise RuntimeError("killed")
