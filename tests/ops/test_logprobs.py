import torch

from lit_align.ops.logprobs import masked_mean, shift_labels, token_logps
from lit_align.types import IGNORE_INDEX


def test_shift_labels_aligns_next_token_and_masks_ignored():
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6], [IGNORE_INDEX, 7, 8, IGNORE_INDEX]])
    targets, mask = shift_labels(labels)
    # position t predicts token t + 1; the last position predicts nothing
    assert targets.tolist() == [[0, 5, 6, 0], [7, 8, 0, 0]]
    assert mask.tolist() == [[False, True, True, False], [True, True, False, False]]
    assert mask.dtype == torch.bool


def test_token_logps_matches_log_softmax_gather():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    targets = torch.randint(0, 11, (3, 5))
    expected = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(token_logps(logits, targets), expected, atol=1e-6)


def test_token_logps_by_hand():
    # logits (0, log 3) -> probabilities (1/4, 3/4); target 1 -> log(3/4)
    logits = torch.tensor([[[0.0, float(torch.log(torch.tensor(3.0)))]]])
    assert torch.allclose(token_logps(logits, torch.tensor([[1]])), torch.log(torch.tensor([[0.75]])))


def test_token_logps_gradient_raises_target_logit():
    logits = torch.zeros(1, 1, 4, requires_grad=True)
    token_logps(logits, torch.tensor([[2]])).sum().backward()
    # d log p_2 / d z = onehot(2) - softmax(z) = (-1/4, -1/4, 3/4, -1/4)
    assert torch.allclose(logits.grad, torch.tensor([[[-0.25, -0.25, 0.75, -0.25]]]))


def test_masked_mean_ignores_masked_and_handles_empty():
    values = torch.tensor([[1.0, 100.0], [3.0, 5.0]])
    mask = torch.tensor([[True, False], [True, True]])
    assert masked_mean(values, mask).item() == 3.0  # (1 + 3 + 5) / 3
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0
