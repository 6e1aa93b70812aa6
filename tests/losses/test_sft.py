import math

import torch

from lit_align.losses.sft import sft_loss


def test_sft_loss_is_token_mean_nll_by_hand():
    """Counted log-probs are log(1/2), log(1/4), log(1/8) -> loss = (1 + 2 + 3) * log 2 / 3 = 2 log 2."""
    logps = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.125, 0.7, 0.7]]))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = sft_loss(logps, mask)
    assert math.isclose(out.loss.item(), 2 * math.log(2), rel_tol=1e-6)
    assert out.num_tokens.item() == 3
    assert out.loss.shape == ()


def test_sft_loss_gradient_raises_counted_logps_only():
    logps = torch.full((1, 3), -1.0, requires_grad=True)
    mask = torch.tensor([[True, False, True]])
    sft_loss(logps, mask).loss.backward()
    # minimising -mean pushes counted log-probs up: gradient -1/2 on them, 0 elsewhere
    assert logps.grad.tolist() == [[-0.5, 0.0, -0.5]]


def test_sequence_nll_is_token_mean_of_summed_logps():
    """Two sequences with summed log-probs -3 (3 tokens) and -1 (1 token): loss = 4 / 4 = 1."""
    from lit_align.losses.sft import sequence_nll_loss

    logps = torch.tensor([-3.0, -1.0], requires_grad=True)
    loss = sequence_nll_loss(logps, torch.tensor([3, 1]))
    assert loss.item() == 1.0
    loss.backward()
    assert logps.grad.tolist() == [-0.25, -0.25]  # descent raises every sequence's log-prob


def test_normalizer_makes_two_processes_average_to_the_global_token_mean():
    """Process A: counted log-probs log(1/2) x 1 token; process B: log(1/4), log(1/4), log(1/4) (3 tokens).

    Global token mean of the NLL = (1 + 2 + 2 + 2) * log 2 / 4 = 7/4 log 2. The mean token count per process is 2;
    A's loss = log 2 / 2, B's = 6 log 2 / 2, and their average (what data parallelism does) = 7/4 log 2. Without the
    normalizer the average would be (log 2 + 2 log 2) / 2 = 3/2 log 2.
    """
    from lit_align.losses.sft import sequence_nll_loss

    normalizer = torch.tensor(2.0)
    a = sft_loss(torch.log(torch.tensor([[0.5, 0.9]])), torch.tensor([[True, False]]), normalizer).loss
    b = sft_loss(torch.log(torch.full((1, 3), 0.25)), torch.ones(1, 3, dtype=torch.bool), normalizer).loss
    assert math.isclose(((a + b) / 2).item(), 1.75 * math.log(2), rel_tol=1e-6)
    # The same for the summed-sequence form used by DPO's NLL term.
    a = sequence_nll_loss(torch.tensor([-math.log(2)]), torch.tensor([1]), normalizer)
    b = sequence_nll_loss(torch.tensor([-6 * math.log(2)]), torch.tensor([3]), normalizer)
    assert math.isclose(((a + b) / 2).item(), 1.75 * math.log(2), rel_tol=1e-6)
