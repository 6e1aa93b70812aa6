"""Pure tensor operations shared by every objective (no Lightning, no tokenizer, no state)."""

from lit_align.ops.logprobs import masked_mean, sequence_logps, shift_labels, token_logps

__all__ = ["masked_mean", "sequence_logps", "shift_labels", "token_logps"]
