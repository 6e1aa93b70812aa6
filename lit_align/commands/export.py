"""``lit-align export``: turn a Lightning checkpoint of any objective into a Hugging Face model folder."""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import yaml
from jsonargparse import auto_cli
from lightning import LightningModule
from torch.distributed.checkpoint import CheckpointException
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from lit_align.errors import CheckpointError, LitAlignError
from lit_align.roles.models import save_hf
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.runtime.checkpoint_io import load_checkpoint_file

REBUILD_KEYS = ("seed_everything", "trainer", "model", "data")


def load_module(run_config: str, ckpt_path: str) -> LightningModule:
    """Rebuild a run's objective from its resolved config and load a checkpoint's trained weights into it."""
    from lit_align.commands.fit import run_cli  # the CLI imports every objective; keep `lit-align --help` light

    config_path, ckpt = Path(run_config), Path(ckpt_path)
    if not config_path.is_file():
        raise LitAlignError(f"--run_config: '{config_path}' does not exist")
    if not ckpt.exists():
        raise CheckpointError(f"--ckpt_path: '{ckpt}': no such checkpoint")
    state = read_state_dict(ckpt)  # a bad checkpoint fails before the module is rebuilt
    # Keep the sections that describe the module; fit-only keys (ckpt_path, weights_only) are not needed here.
    settings = {k: v for k, v in yaml.safe_load(config_path.read_text()).items() if k in REBUILD_KEYS}
    settings.setdefault("trainer", {})["logger"] = False
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "config.yaml"
        clean.write_text(yaml.safe_dump(settings))
        with warnings.catch_warnings():  # LightningCLI warns when given args while sys.argv holds others
            warnings.simplefilter("ignore")
            cli = run_cli(["--config", str(clean)], run=False)
    module = cli.model
    module.configure_model()
    missing, unexpected = module.load_state_dict(state, strict=False)
    policy_missing = [k for k in missing if k.startswith("policy.")]
    if policy_missing or unexpected:
        raise LitAlignError(
            f"--ckpt_path: '{ckpt}' does not match the config's model "
            f"(missing {policy_missing[:3]}, unexpected {unexpected[:3]})"
        )
    return module


def read_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    """The module weights of a Lightning checkpoint: one file, or a folder of FSDP2 shards (consolidated here).

    Both hold tensors and plain values only, so they load with ``weights_only=True`` (no unpickling of code).
    """
    if not ckpt.is_dir():
        return _state_dict(load_checkpoint_file(ckpt, "--ckpt_path"), ckpt)
    if not (ckpt / ".metadata").is_file():
        raise LitAlignError(f"--ckpt_path: '{ckpt}' is a folder but not a sharded checkpoint (no .metadata)")
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "consolidated.pt"
        try:
            dcp_to_torch_save(ckpt, whole)
        except CheckpointException as error:  # a BaseException in torch
            raise LitAlignError(
                f"--ckpt_path: '{ckpt}': damaged or incomplete folder of shards ({error!r:.200})"
            ) from error
        return _state_dict(load_checkpoint_file(whole, "--ckpt_path"), ckpt)


def _state_dict(checkpoint: object, ckpt: Path) -> dict[str, torch.Tensor]:
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"--ckpt_path: '{ckpt}': not a Lightning checkpoint (no state_dict)")
    return checkpoint["state_dict"]


def export(run_config: str = "", ckpt_path: str = "", out: str = "", merge_adapter: bool = True) -> dict:
    """Write the trained policy of a checkpoint (merged LoRA, or the adapter alone) with its tokenizer to ``out``.

    The folder loads with ``AutoModelForCausalLM.from_pretrained`` (``AutoModelForSequenceClassification`` for a
    reward model; ``PeftModel.from_pretrained`` on the base for an adapter alone). The frozen reference, value heads
    and cached reference log-probs are not part of it.

    Args:
        run_config: The run's resolved config (``<run>/logs/version_N/config.yaml``): how to rebuild the module.
        ckpt_path: A Lightning checkpoint of that run (``.../checkpoints/*.ckpt``): a file, or a folder of shards
            written under ``configs/strategy/fsdp.yaml``.
        out: Output folder.
        merge_adapter: Under LoRA/QLoRA, merge the adapter into the base weights (True) or save the adapter alone.

    """
    for key, value in (("--run_config", run_config), ("--ckpt_path", ckpt_path), ("--out", out)):
        if not value:
            raise LitAlignError(f"{key} is required (lit-align export --help)")
    module = load_module(run_config, ckpt_path)
    spec = module.policy_spec
    tokenizer = load_tokenizer(spec.name_or_path, trust_remote_code=spec.trust_remote_code)
    head = getattr(module, "head", "causal_lm")
    folder = save_hf(module.policy, tokenizer, out, spec=spec, merge_adapter=merge_adapter, head=head)
    result = {"checkpoint": str(ckpt_path), "out": str(folder), "merged": merge_adapter, "head": head}
    print(json.dumps(result))
    return result


def export_cli(args: list[str] | None = None) -> None:
    """``lit-align export --help``."""
    auto_cli(export, args=sys.argv[2:] if args is None else args, prog="lit-align export", exit_on_error=False)
