"""Drive a lit-align objective from your own Fabric loop: you own the loop, the module owns roles, loss and metrics.

python examples/fabric_loop.py --max-steps 20 --out runs/example-fabric
"""

from __future__ import annotations

import argparse

import torch
from lightning.fabric import Fabric
from lightning.fabric.loggers import CSVLogger

from lit_align.data import DataSource, SFTDataModule
from lit_align.objectives import SFT
from lit_align.roles.models import ModelSpec


def main(argv: list[str] | None = None) -> list[float]:
    """Run ``max_steps`` SFT steps in a Fabric loop and return the training losses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--out", default="runs/example-fabric")
    args = parser.parse_args(argv)

    fabric = Fabric(accelerator="cpu", devices=1, loggers=CSVLogger(args.out))
    fabric.launch()
    module = SFT(
        policy=ModelSpec(name_or_path="lit-align/tiny-base"),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
    )
    module.configure_model()  # builds the policy role, as the Trainer would
    optimizer = module.configure_optimizers()
    model, optimizer = fabric.setup(module, optimizer)

    data = SFTDataModule(
        tokenizer="lit-align/tiny-base", source=DataSource(num_rows=512, num_val_rows=8), batch_size=32
    )
    data.setup("fit")
    loader = fabric.setup_dataloaders(data.train_dataloader())

    losses: list[float] = []
    model.train()
    while len(losses) < args.max_steps:
        for batch_idx, batch in enumerate(loader):
            loss = model.training_step(batch, batch_idx)  # logs train/* through fabric.log
            fabric.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            if len(losses) == args.max_steps:
                break
    fabric.logger.finalize("success")
    fabric.print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    return losses


if __name__ == "__main__":
    main()
