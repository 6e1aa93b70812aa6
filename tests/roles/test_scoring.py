"""The scored-positions-only forward pass against the plain full-logits one, on the embedded Llama."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import lit_align.roles.scoring as scoring
from lit_align.losses.specs import preference_loss_spec
from lit_align.ops.logprobs import shift_labels
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.types import IGNORE_INDEX


def _batch(vocab: int, rows: int = 4, length: int = 14) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(4, vocab, (rows, length))
    attention = torch.ones_like(ids)
    attention[1, -3:] = 0  # right padding
    labels = ids.masked_fill(attention == 0, IGNORE_INDEX)
    labels[:, :5] = IGNORE_INDEX  # the prompt
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "output_layer", lambda model: None)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_dpo_loss_and_gradients_equal_the_full_logits_path(monkeypatch):
    policy = load_policy(ModelSpec())
    assert scoring.output_layer(policy) is policy.lm_head  # tied embeddings, plain Linear: the chunked path
    batch = _batch(policy.config.vocab_size)
    loss_fn = preference_loss_spec("sigmoid")

    def loss_and_grads() -> tuple[torch.Tensor, dict]:
        policy.zero_grad()
        logps, lengths = scoring.stacked_logps(policy, batch)
        ref = logps.detach() - 0.3
        out = loss_fn(*logps.chunk(2), *lengths.chunk(2), *ref.chunk(2), nll_normalizer=lengths.sum())
        out.loss.backward()
        return out.loss.detach(), _grads(policy)

    chunked_loss, chunked = loss_and_grads()
    with monkeypatch.context() as m:
        _plain(m)
        plain_loss, plain = loss_and_grads()
    assert chunked.keys() == plain.keys() and "model.embed_tokens.weight" in plain  # tied to the head
    assert torch.allclose(chunked_loss, plain_loss, atol=1e-6)
    for name, grad in plain.items():
        assert torch.allclose(chunked[name], grad, atol=1e-6), name


def test_temperature_kept_positions_stats_and_hidden_match_the_plain_path(monkeypatch):
    policy = load_policy(ModelSpec()).eval()
    batch = _batch(policy.config.vocab_size)
    targets, mask = shift_labels(batch["labels"])
    keep = 9
    kwargs = {"logits_to_keep": keep, "temperature": 0.7, "with_stats": True, "with_hidden": True}
    args = (policy, batch["input_ids"], batch["attention_mask"], targets[:, -keep:], mask[:, -keep:])
    chunked = scoring.token_scores(*args, **kwargs)
    with monkeypatch.context() as m:
        _plain(m)
        plain = scoring.token_scores(*args, **kwargs)
    assert chunked.logps.shape == (4, keep)
    assert torch.allclose(chunked.logps, plain.logps, atol=1e-6)
    assert torch.allclose(chunked.entropy, plain.entropy, atol=1e-5)
    assert torch.equal(chunked.predicted[mask[:, -keep:]], plain.predicted[mask[:, -keep:]])
    assert torch.equal(chunked.hidden, plain.hidden)
    assert (chunked.logps[~mask[:, -keep:]] == 0).all()


def test_no_batch_times_vocabulary_tensor_is_saved_for_backward(monkeypatch):
    policy = load_policy(ModelSpec())
    batch = _batch(policy.config.vocab_size, rows=6, length=20)
    vocab = policy.config.vocab_size

    def largest_saved() -> int:
        """Elements of the largest tensor with a vocabulary-sized last dimension kept for the backward."""
        sizes = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.dim() >= 2 and t.shape[-1] == vocab:
                sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            scoring.stacked_logps(policy, batch)[0].sum().backward()
        return max(sizes)

    assert largest_saved() == 0
    with monkeypatch.context() as m:
        _plain(m)
        assert largest_saved() >= 6 * 20 * vocab  # the plain path keeps the (B, T, V) logits: the check can fail


def test_models_that_rescale_logits_or_wrap_the_head_take_the_plain_path():
    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    assert scoring.output_layer(LlamaForCausalLM(config)) is not None
    config.final_logit_softcapping = 30.0  # as Gemma 2 sets it
    assert scoring.output_layer(LlamaForCausalLM(config)) is None
    lora_head = load_policy(ModelSpec(finetune="lora", lora_target_modules=["q_proj", "lm_head"]))
    assert scoring.output_layer(lora_head) is None
    assert scoring.output_layer(load_policy(ModelSpec(finetune="lora"))) is not None


def _pairs_batch() -> dict[str, torch.Tensor]:
    """Three pairs, prompts of 3, 6 and 9 tokens, completions of different lengths, stacked as the collate does."""
    from lit_align.data.collate import collate_pairwise

    torch.manual_seed(2)
    draw = lambda n: torch.randint(4, 100, (n,)).tolist()  # noqa: E731
    features = [
        {"prompt_ids": draw(p), "chosen_ids": draw(c), "rejected_ids": draw(r), "index": i}
        for i, (p, c, r) in enumerate([(3, 5, 2), (6, 1, 7), (9, 4, 4)])
    ]
    return dict(collate_pairwise(features, pad_token_id=0))


def test_shared_prompt_pass_equals_whole_rows_in_loss_and_every_gradient(monkeypatch):
    # In float64 weights the two passes differ only by the float32 log-softmax (about 1e-7); in float32 weights the
    # prompt's gradient sums in another order and differs by about 2e-6 of the largest entry.
    policy = load_policy(ModelSpec()).double()
    batch = _pairs_batch()
    assert scoring.shares_prefix(policy, batch)
    loss_fn = preference_loss_spec("sigmoid")

    def loss_and_grads() -> tuple[torch.Tensor, torch.Tensor, dict]:
        policy.zero_grad()
        logps, lengths = scoring.stacked_logps(policy, batch)
        ref = torch.linspace(-30, -20, len(logps))
        out = loss_fn(*logps.chunk(2), *lengths.chunk(2), *ref.chunk(2), nll_normalizer=lengths.sum())
        out.loss.backward()
        return logps.detach(), out.loss.detach(), _grads(policy)

    shared_logps, shared_loss, shared = loss_and_grads()
    with monkeypatch.context() as m:
        m.setattr(scoring, "shares_prefix", lambda model, batch: False)
        whole_logps, whole_loss, whole = loss_and_grads()
    assert torch.allclose(shared_logps, whole_logps, atol=1e-5)
    assert torch.allclose(shared_loss, whole_loss, atol=1e-6)
    assert shared.keys() == whole.keys()
    for name, grad in whole.items():
        assert torch.allclose(shared[name], grad, atol=1e-6), name


def test_the_shared_prompt_pass_runs_only_when_it_is_exact():
    policy = load_policy(ModelSpec())
    batch = _pairs_batch()
    other = {**batch, "input_ids": batch["input_ids"].clone()}
    other["input_ids"][3, 0] += 1  # the first rejected row's prompt differs from its chosen row's
    assert not scoring.shares_prefix(policy, other)
    one_token = {**batch, "labels": batch["labels"].clone()}
    one_token["labels"][[0, 3], 1:3] = one_token["input_ids"][[0, 3], 1:3]  # a 1-token prompt: nothing to share
    assert not scoring.shares_prefix(policy, one_token)
    from lit_align.data.collate import collate_pairwise

    uneven = [  # a long prompt with short answers next to a short prompt with long ones: both passes would pad
        {"prompt_ids": [5] * 30, "chosen_ids": [6], "rejected_ids": [7], "index": 0},
        {"prompt_ids": [5] * 2, "chosen_ids": [6] * 30, "rejected_ids": [7] * 30, "index": 1},
    ]
    assert not scoring.shares_prefix(policy, dict(collate_pairwise(uneven, pad_token_id=0)))
    policy.gradient_checkpointing_enable()  # Hugging Face turns the cache off under it
    assert not scoring.shares_prefix(policy, batch)
