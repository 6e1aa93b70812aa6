"""The forward pass that scores a stacked batch with a causal-LM role (policy or reference).

Shape legend: B pairs (or KTO rows); a stacked batch holds 2B rows, T tokens.
"""

from __future__ import annotations

import torch

from lit_align.ops.logprobs import sequence_logps


def stacked_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over every row of a stacked batch (``input_ids``, ``attention_mask``, ``labels``).

    Returns:
        Summed completion log-probs and completion token counts of every row. Shapes: (2B,), (2B,)

    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return sequence_logps(logits, batch["labels"])
