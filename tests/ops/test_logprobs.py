import pytest
import torch

from lit_align.ops.logprobs import linear_token_logps, masked_mean, shift_labels, token_logps
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


def test_token_logps_forward_and_gradients_equal_autograd_of_the_plain_formula():
    # Several rows, an incoming gradient that differs per position (as a mask and per-token weights give), a
    # repeated target; the logits' gradient comes from the hand-written row-wise backward.
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64) * 3
    targets = torch.randint(0, 11, (3, 5))
    targets[0, :2] = 4
    weights = torch.randn(3, 5, dtype=torch.float64)
    plain = logits.clone().requires_grad_(True)
    expected = torch.log_softmax(plain.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    (expected * weights).sum().backward()
    ours = logits.clone().requires_grad_(True)
    got = token_logps(ours, targets)
    (got * weights).sum().backward()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.grad, plain.grad, rtol=0, atol=1e-6)
    assert ours.grad.dtype == logits.dtype


def test_token_logps_of_bfloat16_logits_is_float32_and_its_gradient_bfloat16():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7).bfloat16().requires_grad_(True)
    targets = torch.randint(0, 7, (2, 3))
    got = token_logps(logits, targets)
    got.sum().backward()
    expected = torch.log_softmax(logits.detach().float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16


def _plain_linear_logps(hidden, weight, bias, targets, scale=1.0):
    logits = torch.nn.functional.linear(hidden, weight, bias).float() * scale
    return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def test_linear_token_logps_by_hand():
    # hidden (1, 0) picks weight column 0: logits (0, log 3) -> p = (1/4, 3/4); target 1 -> log 3/4; entropy by hand
    hidden = torch.tensor([[1.0, 0.0]])
    weight = torch.tensor([[0.0, 5.0], [float(torch.log(torch.tensor(3.0))), 7.0]])
    out = linear_token_logps(hidden, weight, None, torch.tensor([1]), with_stats=True)
    assert torch.allclose(out.logps, torch.log(torch.tensor([0.75])))
    entropy = -(0.25 * torch.log(torch.tensor(0.25)) + 0.75 * torch.log(torch.tensor(0.75)))
    assert torch.allclose(out.entropy, entropy.reshape(1)) and out.argmax.tolist() == [1]


@pytest.mark.parametrize("scale", [1.0, 1 / 0.7])
@pytest.mark.parametrize("chunk_rows", [1, 8, 1000])
def test_linear_token_logps_forward_and_gradients_match_plain_autograd(scale, chunk_rows):
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = (0.3 * torch.randn(50, 16)).requires_grad_()
    bias = torch.randn(50, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    upstream = torch.randn(37)  # a different incoming gradient per row, as a sequence sum and a loss give
    expected = _plain_linear_logps(hidden, weight, bias, targets, scale)
    want = torch.autograd.grad((expected * upstream).sum(), [hidden, weight, bias])
    out = linear_token_logps(hidden, weight, bias, targets, scale=scale, chunk_rows=chunk_rows)
    got = torch.autograd.grad((out.logps * upstream).sum(), [hidden, weight, bias])
    assert torch.allclose(out.logps, expected, atol=1e-6)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-6)


def test_linear_token_logps_frozen_weight_gets_no_gradient_and_bf16_matches():
    torch.manual_seed(1)
    hidden = torch.randn(9, 8, dtype=torch.bfloat16, requires_grad=True)
    weight = torch.randn(20, 8, dtype=torch.bfloat16)  # frozen, as an LM head under LoRA
    targets = torch.randint(0, 20, (9,))
    expected = _plain_linear_logps(hidden, weight, None, targets)
    (want,) = torch.autograd.grad(expected.sum(), [hidden])
    out = linear_token_logps(hidden, weight, None, targets, chunk_rows=4)
    (got,) = torch.autograd.grad(out.logps.sum(), [hidden])
    assert out.logps.dtype == torch.float32 and torch.allclose(out.logps, expected, atol=1e-6)
    assert got.dtype == torch.bfloat16 and torch.allclose(got.float(), want.float(), atol=1e-2)
