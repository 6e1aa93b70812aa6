"""Run by tests/runtime/test_sharding.py under ``torch.distributed.run`` with 2 CPU processes: a save of a folder
of shards that dies half-way (one shard truncated, then an error) leaves the previous checkpoint readable and unchanged.

``python tests/runtime/sharded_atomic_save.py OUT lightning`` runs the same with Lightning's own
ModelParallelStrategy save, to show that the situation is real (the previous checkpoint is damaged there)."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from lightning import Trainer
from lightning.pytorch.strategies import ModelParallelStrategy, model_parallel

from lit_align.commands.export import read_state_dict
from lit_align.data import DataSource, SFTDataModule
from lit_align.errors import LitAlignError
from lit_align.objectives import SFT
from lit_align.runtime.sharding import FSDP2Strategy


def _dies_half_way(original):
    def save(state, path):
        original(state, path)
        dist.barrier()
        if dist.get_rank() == 0:
            shard = next(Path(path).glob("*.distcp"))
            shard.write_bytes(shard.read_bytes()[:100])  # the kill lands while this shard is being written
        raise RuntimeError("killed during the save")

    return save


def main(out: str, which: str) -> None:
    strategy = (
        FSDP2Strategy() if which == "ours" else ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    )
    module = SFT(optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    trainer = Trainer(
        strategy=strategy,
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
    trainer.fit(module, SFTDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=4))
    last = Path(trainer.strategy.broadcast(str(Path(out) / "last.ckpt")))
    trainer.save_checkpoint(last)
    before = read_state_dict(last) if dist.get_rank() == 0 else None

    with torch.no_grad():  # the next save would hold other weights
        for p in module.parameters():
            p.add_(1.0)
    model_parallel._distributed_checkpoint_save = _dies_half_way(model_parallel._distributed_checkpoint_save)
    try:
        trainer.save_checkpoint(last)
    except RuntimeError as error:
        assert "killed during the save" in str(error)
    dist.barrier()
    if dist.get_rank() == 0:
        try:
            after = read_state_dict(last)
        except LitAlignError as error:  # export's one-line error for a damaged folder of shards
            print(f"RESULT damaged: {type(error).__name__}", flush=True)
            return
        same = after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
        print(f"RESULT {'intact' if same else 'changed'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "ours")
