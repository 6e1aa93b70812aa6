"""Generation: masking after EOS, truncation, grouping of completions, and token scoring."""

import torch

import lit_align.roles.scoring as scoring_module
from lit_align.data import PromptDataModule
from lit_align.data.sources import DataSource
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.rollout import SamplingConfig, completion_logps, generate, mask_after_eos, repeat_prompts, stop_token_ids


def test_mask_after_eos():
    ids = torch.tensor([[5, 3, 0, 0], [5, 6, 7, 8], [3, 9, 3, 0]])
    mask, truncated = mask_after_eos(ids, [3])
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    assert truncated.tolist() == [False, True, False]
    mask, _ = mask_after_eos(torch.tensor([[5, 4, 9]]), [3, 4])  # several stop tokens
    assert mask.tolist() == [[True, True, False]]


def test_generate_groups_masks_and_scores():
    tokenizer = load_tokenizer("lit-align/tiny-sft")
    model = load_policy(ModelSpec())
    dm = PromptDataModule(source=DataSource(num_rows=4, num_val_rows=4), batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    grouped = repeat_prompts(batch, 3)
    assert (
        grouped["prompts"][:3] == [batch["prompts"][0]] * 3
        and grouped["columns"]["answer"][3] == batch["columns"]["answer"][1]
    )
    torch.manual_seed(0)
    stops = stop_token_ids(model, tokenizer)
    rollout = generate(
        model, grouped, SamplingConfig(max_new_tokens=1, mask_truncated=True), pad_token_id=0, stop_ids=stops
    )
    assert rollout.completion_ids.shape == (6, 1) and rollout.truncated.all()  # no answer fits in 1 token
    assert not rollout.completion_mask.any()  # truncated completions are masked out of the loss
    greedy = generate(model, grouped, SamplingConfig(temperature=0, max_new_tokens=8), pad_token_id=0, stop_ids=stops)
    for ids, mask in zip(greedy.completion_ids, greedy.completion_mask, strict=True):
        kept = ids[mask].tolist()
        assert kept[-1] in stops and all(t not in stops for t in kept[:-1])  # counted up to and including EOS
        assert (ids[~mask] == 0).all()  # everything after EOS is padding
    # The log-prob of greedy tokens from a full forward pass equals the generation's own scores.
    scores = completion_logps(model, greedy, with_entropy=True)
    out = model.generate(
        input_ids=grouped["input_ids"],
        attention_mask=grouped["attention_mask"],
        do_sample=False,
        max_new_tokens=greedy.completion_ids.shape[1],
        pad_token_id=0,
        eos_token_id=stops,
        output_scores=True,
        return_dict_in_generate=True,
    )
    gen_logps = (
        torch.stack([torch.log_softmax(s, -1) for s in out.scores], 1)
        .gather(-1, greedy.completion_ids.unsqueeze(-1))
        .squeeze(-1)
    )
    assert torch.allclose(scores.token_logps[greedy.completion_mask], gen_logps[greedy.completion_mask], atol=1e-4)
    assert (scores.entropy >= 0).all()


def test_completion_logps_score_at_the_sampling_temperature():
    model = load_policy(ModelSpec())
    dm = PromptDataModule(source=DataSource(num_rows=4, num_val_rows=4), batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    torch.manual_seed(0)
    rollout = generate(model, batch, SamplingConfig(temperature=2.0, max_new_tokens=4), pad_token_id=0, stop_ids=[3])
    hot = completion_logps(model, rollout, temperature=2.0).token_logps
    plain = completion_logps(model, rollout).token_logps
    position_ids = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask, position_ids=position_ids).logits
    r = rollout.completion_ids.shape[1]
    by_hand = torch.log_softmax(logits[:, -(r + 1) : -1] / 2.0, -1).gather(-1, rollout.completion_ids.unsqueeze(-1))
    mask = rollout.completion_mask  # tokens after EOS are not scored (0)
    assert torch.allclose(hot[mask], by_hand.squeeze(-1)[mask], atol=1e-5) and (hot[~mask] == 0).all()
    assert not torch.allclose(hot[mask], plain[mask], atol=1e-3)


def _grouped_rollout(group_size: int = 3):
    """Two left-padded prompts of unequal length, ``group_size`` completions each; some end early at EOS."""
    from lit_align.rollout import Rollout

    torch.manual_seed(0)
    prompts = [torch.randint(5, 100, (7,)), torch.randint(5, 100, (4,))]
    width, r = 7, 5
    prompt_ids = torch.stack([torch.cat([torch.zeros(width - len(p), dtype=torch.long), p]) for p in prompts])
    prompt_mask = (torch.arange(width) >= torch.tensor([[width - len(p)] for p in prompts])).long()
    prompt_ids, prompt_mask = (t.repeat_interleave(group_size, dim=0) for t in (prompt_ids, prompt_mask))
    completion_ids = torch.randint(5, 100, (len(prompt_ids), r))
    completion_mask = torch.ones_like(completion_ids, dtype=torch.bool)
    completion_mask[1, 3:] = False  # ended after 3 tokens
    completion_ids = completion_ids.masked_fill(~completion_mask, 0)
    attention = torch.cat([prompt_mask, completion_mask.long()], dim=1)
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    return Rollout(input_ids, attention, completion_ids, completion_mask, ~completion_mask.all(-1))


def test_completions_of_one_prompt_share_its_pass_exactly(monkeypatch):
    """Log-probs, entropy, values and every gradient equal the whole-row pass (float64 weights).

    The LM head's log-softmax runs in float32 in both, so gradients agree to about 1e-7 of their largest entry.
    """
    import lit_align.rollout.scoring as rollout_scoring
    from lit_align.rollout import ValueHead

    policy = load_policy(ModelSpec()).double()
    head = ValueHead(policy.config.hidden_size).double()
    torch.nn.init.normal_(head.summary.weight)
    rollout = _grouped_rollout()
    groups = rollout_scoring.prompt_groups(policy, rollout.input_ids[:, : rollout.prompt_length])
    assert groups.tolist() == [0, 0, 0, 1, 1, 1]
    calls = []
    monkeypatch.setattr(
        rollout_scoring,
        "shared_prompt_token_scores",
        lambda *a, **k: calls.append(1) or scoring_module.shared_prompt_token_scores(*a, **k),
    )

    def scored():
        policy.zero_grad()
        head.zero_grad()
        out = completion_logps(policy, rollout, with_entropy=True, value_head=head, temperature=0.7)
        (out.token_logps.sum() + out.values.sum()).backward()
        grads = {n: p.grad.clone() for n, p in [*policy.named_parameters(), *head.named_parameters()]}
        return out, grads

    shared, shared_grads = scored()
    assert calls == [1]
    with monkeypatch.context() as m:
        m.setattr(rollout_scoring, "prompt_groups", lambda model, ids: None)
        whole, whole_grads = scored()
    for a, b in zip(shared, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for name, grad in whole_grads.items():
        scale = grad.abs().max().clamp(min=1)
        torch.testing.assert_close(shared_grads[name], grad, rtol=0, atol=1e-6 * scale.item(), msg=name)


def test_prompts_are_shared_only_when_exact_and_worth_it():
    from lit_align.roles.scoring import prompt_groups

    policy = load_policy(ModelSpec())
    rollout = _grouped_rollout()
    prompts = rollout.input_ids[:, : rollout.prompt_length]
    assert prompt_groups(policy, prompts[::3]) is None  # one completion per prompt: nothing to share
    mixed = prompts.clone()
    mixed[1, -1] += 1  # a different prompt in the middle of a group: 4 runs for 6 rows
    assert prompt_groups(policy, mixed) is None
    assert prompt_groups(policy, prompts[:, -1:]) is None  # 1-token prompts
    policy.gradient_checkpointing_enable()  # Hugging Face turns the cache off under it
    assert prompt_groups(policy, prompts) is None


def test_cat_rollouts_keeps_every_rows_tokens_and_log_probs():
    """Two rollouts of different prompt and completion lengths: stacked, each row scores exactly as before."""
    import torch

    from lit_align.roles.models import ModelSpec, load_policy
    from lit_align.rollout import Rollout, cat_rollouts, completion_logps

    def rollout(prompt, completion, mask):
        n = len(prompt)
        ids, cids = torch.tensor(prompt), torch.tensor(completion)
        attention = torch.cat([(ids != 0).long(), torch.tensor(mask).long()], 1)
        return Rollout(torch.cat([ids, cids], 1), attention, cids, torch.tensor(mask), torch.zeros(n, dtype=torch.bool))

    a = rollout([[0, 5, 6], [7, 8, 9]], [[10, 11], [12, 0]], [[True, True], [True, False]])
    b = rollout([[5, 6, 7, 8, 9]], [[13, 14, 15]], [[True, True, True]])
    merged = cat_rollouts([a, b], pad_token_id=0)
    assert merged.input_ids.shape == (3, 8) and merged.completion_ids.shape == (3, 3)
    assert merged.input_ids[0].tolist() == [0, 0, 0, 5, 6, 10, 11, 0]  # two more pads on the left, one on the right
    policy = load_policy(ModelSpec()).double()
    with torch.no_grad():
        alone = [completion_logps(policy, r).token_logps for r in (a, b)]
        together = completion_logps(policy, merged).token_logps
    assert torch.allclose(together[:2, :2] * a.completion_mask, alone[0] * a.completion_mask, atol=1e-10)
    assert torch.allclose(together[2:], alone[1], atol=1e-10)
