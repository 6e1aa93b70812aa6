"""Use a lit-align objective and data module from your own plain Lightning script (no lit-align CLI).

python examples/lightning_trainer.py --max-steps 20 --out runs/example-dpo
"""

from __future__ import annotations

import argparse

import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.objectives import DPO
from lit_align.roles.models import ModelSpec


def main(argv: list[str] | None = None) -> DPO:
    """Train DPO on the embedded task for a few steps with an ordinary ``Trainer``; return the module."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--out", default="runs/example-dpo")
    args = parser.parse_args(argv)

    model = DPO(
        policy=ModelSpec(name_or_path="lit-align/tiny-sft"),
        beta=0.1,
        sft_weight=1.0,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-4),
    )
    data = PairwiseDataModule(
        tokenizer="lit-align/tiny-sft", source=DataSource(num_rows=256, num_val_rows=32), max_length=64, batch_size=16
    )
    trainer = Trainer(
        max_steps=args.max_steps,
        default_root_dir=args.out,
        logger=CSVLogger(args.out),
        val_check_interval=args.max_steps,
        log_every_n_steps=1,
        enable_progress_bar=False,
    )
    trainer.fit(model, data)
    print({k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
    return model


if __name__ == "__main__":
    main()
