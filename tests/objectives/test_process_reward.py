"""ProcessRewardModel: both heads score step ends as trained, export, and score again through the PRM scorer."""

import math

import pytest
import torch
from lightning import Trainer

from lit_align.data import DataSource, StepwiseDataModule
from lit_align.data.stepwise import prompt_ids, tokenize_steps
from lit_align.errors import ConfigError
from lit_align.losses.process_reward import step_classification_loss
from lit_align.objectives import ProcessRewardModel
from lit_align.rewards.prm import ProcessRewardScorer, aggregate_steps
from lit_align.rewards.scorers import build_scorer
from lit_align.roles.models import ModelSpec
from lit_align.runtime.callbacks import SaveHuggingFace
from lit_align.types import IGNORE_INDEX

TINY = "lit-align/tiny-sft"
PROMPT = [{"role": "user", "content": "What is 23 + 45 - 17?"}]


def _trained(tmp_path, score_head):
    """Four steps on embedded step-labelled chains, saved as a Hugging Face folder."""
    module = ProcessRewardModel(policy=ModelSpec(name_or_path=TINY), score_head=score_head,
                                optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))  # fmt: skip
    data = StepwiseDataModule(source=DataSource(path="lit-align/chains", num_rows=32, num_val_rows=8), batch_size=8)
    trainer = Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path,
                      callbacks=[SaveHuggingFace()])  # fmt: skip
    trainer.fit(module, data)
    return module, data, tmp_path / "hf_model"


def test_reward_token_scores_are_the_two_logits_difference_and_the_loss_is_read_at_step_ends(tmp_path):
    module = ProcessRewardModel(policy=ModelSpec(name_or_path=TINY))
    module.configure_model()
    data = StepwiseDataModule(source=DataSource(path="lit-align/chains", num_rows=8, num_val_rows=4), batch_size=4)
    data.setup("fit")
    batch = next(iter(data.splits.loader("train", shuffle=False)))
    scores = module(batch["input_ids"], batch["attention_mask"])  # (B, T), only the two rows of the head computed
    logits = module.policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    plus, minus = (data.tokenizer(t, add_special_tokens=False).input_ids[0] for t in "+-")
    torch.testing.assert_close(scores, logits[..., plus] - logits[..., minus], rtol=1e-5, atol=1e-5)
    ends = batch["step_labels"] != IGNORE_INDEX
    by_hand = torch.nn.functional.binary_cross_entropy_with_logits(scores[ends], batch["step_labels"][ends].float())
    assert step_classification_loss(scores, batch["step_labels"]).item() == pytest.approx(by_hand.item())


def _one_training_step(module):
    """One training-step loss on the first 8 embedded step-labelled chains, and what it logged."""
    module.configure_model()
    data = StepwiseDataModule(source=DataSource(path="lit-align/chains", num_rows=8, num_val_rows=4), batch_size=8)
    data.setup("fit")
    batch = next(iter(data.splits.loader("train", shuffle=False)))
    logged = {}
    module.log_dict = lambda metrics, **_: logged.update(metrics)
    return data, batch, module._shared_step(batch, "train"), logged


def test_the_language_modelling_term_is_the_mean_nll_of_the_right_steps():
    module = ProcessRewardModel(policy=ModelSpec(name_or_path=TINY), sft_weight=0.5)
    data, batch, loss, logged = _one_training_step(module)
    logits = module.policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), -1)  # position t predicts token t + 1
    targets = batch["labels"][:, 1:]
    counted = targets != IGNORE_INDEX
    nll = -logps.gather(-1, targets.clamp(min=0)[..., None])[..., 0][counted].mean()
    plus, minus = (data.tokenizer(t, add_special_tokens=False).input_ids[0] for t in "+-")
    bce = step_classification_loss(logits[..., plus] - logits[..., minus], batch["step_labels"])
    assert logged["train/nll"].item() == pytest.approx(nll.item(), rel=1e-5)
    assert loss.item() == pytest.approx(bce.item() + 0.5 * nll.item(), rel=1e-5)


def test_likelihood_head_with_a_language_modelling_term_by_hand():
    """Step logit = 0.5 * (lowest log-prob of a step token so far) + 2, read at step ends; plus 0.25 x the right
    steps' mean NLL, every term recomputed here from the full log-softmax, one row and token at a time."""
    module = ProcessRewardModel(policy=ModelSpec(name_or_path=TINY), score_head="likelihood", sft_weight=0.25)
    data, batch, loss, logged = _one_training_step(module)
    with torch.no_grad():
        logps = torch.log_softmax(module.policy(input_ids=batch["input_ids"]).logits.float(), -1)
    ids, counted, labels, steps = batch["input_ids"], batch["step_token_mask"], batch["labels"], batch["step_labels"]
    bce, ends, nlls = 0.0, 0, []
    for b in range(len(ids)):
        lowest = 0.0
        for t in range(1, ids.shape[1]):
            logp = logps[b, t - 1, ids[b, t]].item()
            if counted[b, t]:
                lowest = min(lowest, logp)
            if labels[b, t] != IGNORE_INDEX:
                nlls.append(-logp)
            if steps[b, t] != IGNORE_INDEX:
                p = 1 / (1 + math.exp(-(0.5 * lowest + 2.0)))
                y = float(steps[b, t])
                bce, ends = bce - (y * math.log(p) + (1 - y) * math.log(1 - p)), ends + 1
    nll = sum(nlls) / len(nlls)
    assert logged["train/nll"].item() == pytest.approx(nll, rel=1e-4)
    assert loss.item() == pytest.approx(bce / ends + 0.25 * nll, rel=1e-4)


@pytest.mark.parametrize("score_head", ["reward_tokens", "classifier", "likelihood"])
def test_export_scores_each_step_as_the_trained_module_does(tmp_path, score_head):
    module, data, folder = _trained(tmp_path, score_head)
    assert ("prm_reward_tokens" in (folder / "config.json").read_text()) == (score_head == "reward_tokens")
    assert ("prm_likelihood" in (folder / "config.json").read_text()) == (score_head == "likelihood")
    scorer = build_scorer(str(folder), kwargs={"aggregate": "min"}).functions[0]
    assert isinstance(scorer, ProcessRewardScorer)
    steps = ["23+45=68", "68-17=51"]
    got = scorer.step_scores([PROMPT], [[{"role": "assistant", "content": "\n".join(steps)}]])[0]
    ids, ends = tokenize_steps(data.tokenizer, PROMPT, steps, "\n")
    counted = torch.zeros(1, len(ids), dtype=torch.bool)
    counted[0, len(prompt_ids(data.tokenizer, PROMPT)) :] = True
    counted[0, ends] = False
    module.eval()
    with torch.no_grad():
        expected = module(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), counted)[0, ends].sigmoid()
    assert got == pytest.approx(expected.tolist(), abs=1e-5) and len(got) == 2
    assert scorer([PROMPT], [[{"role": "assistant", "content": "\n".join(steps)}]]) == [pytest.approx(min(got))]
    assert scorer([PROMPT], [[{"role": "assistant", "content": "\n"}]]) == [None]  # no step: unscored


def test_aggregates_by_hand():
    probs = [0.9, 0.5, 0.8]
    assert aggregate_steps(probs, "min") == 0.5 and aggregate_steps(probs, "last") == 0.8
    assert aggregate_steps(probs, "prod") == pytest.approx(0.36) and aggregate_steps(probs, "mean") == pytest.approx(
        2.2 / 3
    )
    # prod's bias: one more right step (0.95) lowers the score, min's does not.
    assert aggregate_steps([*probs, 0.95], "prod") < 0.36 and aggregate_steps([*probs, 0.95], "min") == 0.5
    assert math.isclose(aggregate_steps([0.25], "prod"), 0.25)


def test_reward_tokens_must_be_single_distinct_tokens():
    with pytest.raises(ConfigError, match=r"model.init_args.reward_tokens.*'ok' is 2 tokens"):
        ProcessRewardModel(policy=ModelSpec(name_or_path=TINY), reward_tokens=("ok", "-")).configure_model()
    with pytest.raises(ConfigError, match=r"model.init_args.reward_tokens.*two different"):
        ProcessRewardModel(policy=ModelSpec(name_or_path=TINY), reward_tokens=("+", "+")).configure_model()
    with pytest.raises(ConfigError, match=r"model.init_args.score_head"):
        ProcessRewardModel(score_head="value")
    with pytest.raises(ConfigError, match=r"model.init_args.sft_weight.*language-model head"):
        ProcessRewardModel(score_head="classifier", sft_weight=1.0)


@pytest.mark.parametrize("mode", ["steps", "deltas"])
def test_ppo_puts_each_steps_prm_score_on_the_token_that_ends_it(tmp_path, monkeypatch, mode):
    """PPO with ``prm_rewards`` steps / deltas: the token rewards (KL off) are the PRM's weighted step scores (or their
    changes) on each step's last token, and nothing else; the aggregate no longer sits on the last token."""
    import lit_align.objectives.ppo as ppo_module
    from lit_align.data import PromptDataModule
    from lit_align.objectives import PPO
    from lit_align.rewards import RewardSpec
    from lit_align.rollout import SamplingConfig

    _, _, folder = _trained(tmp_path, "reward_tokens")
    seen = {}
    for name in ("gae", "dense_step_rewards"):
        original = getattr(ppo_module, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            seen[_name] = args
            return _original(*args, **kwargs)

        monkeypatch.setattr(ppo_module, name, spy)
    # Steps end at "1" here: the tiny model's hot samples are random characters, with many a "1" and few newlines.
    kwargs = {"path": str(folder), "step_separator": "1"}
    prm = RewardSpec("lit_align.rewards.prm.ProcessRewardScorer", kwargs=kwargs, weight=2.0)
    hot = SamplingConfig(max_new_tokens=24, temperature=3.0)
    module = PPO(policy=ModelSpec(name_or_path=TINY), rewards=[prm], prm_rewards=mode, kl_coef=0.0, sampling=hot,
                 completions_per_prompt=4, ppo_epochs=1)  # fmt: skip
    data = PromptDataModule(source=DataSource(path="lit-align/chains", num_rows=4, num_val_rows=2), batch_size=2)
    torch.manual_seed(0)
    Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0,
            enable_model_summary=False, default_root_dir=tmp_path).fit(module, data)  # fmt: skip
    rewards = seen["gae"][0]  # (N, R)
    _, tokenizer, completions, ids, _, _ = seen["dense_step_rewards"]
    step_scores = module.sampler.rewards.functions[0].last_step_scores
    assert max(len(s) for s in step_scores) >= 2
    for i, scores in enumerate(step_scores):
        placed = rewards[i].nonzero().flatten().tolist()
        assert len(placed) == len(scores)  # one reward per step, none elsewhere (not the aggregate on the last token)
        for t in placed[:-1]:
            assert tokenizer.decode(ids[i][: t + 1]).endswith("1")
        expected = [b - a for a, b in zip([0.0, *scores], scores, strict=False)] if mode == "deltas" else scores
        assert rewards[i, placed].tolist() == pytest.approx([2.0 * v for v in expected], abs=1e-5)


def test_ppo_per_step_rewards_need_one_process_reward_model():
    from lit_align.objectives import PPO
    from lit_align.rewards import RewardSpec

    module = PPO(policy=ModelSpec(name_or_path=TINY), rewards=[RewardSpec("lit_align.rewards.final_number")],
                 prm_rewards="deltas")  # fmt: skip
    with pytest.raises(ConfigError, match=r"model.init_args.prm_rewards.*exactly one .*ProcessRewardScorer.*found 0"):
        module.configure_model()


def test_likelihood_head_reads_the_lowest_step_token_probability_of_the_full_logits(tmp_path):
    module = ProcessRewardModel(policy=ModelSpec(name_or_path=TINY), score_head="likelihood", likelihood_scale=0.7,
                                likelihood_offset=1.5)  # fmt: skip
    module.configure_model()
    data = StepwiseDataModule(source=DataSource(path="lit-align/chains", num_rows=8, num_val_rows=4), batch_size=4)
    data.setup("fit")
    batch = next(iter(data.splits.loader("train", shuffle=False)))
    with torch.no_grad():
        scores = module(batch["input_ids"], batch["attention_mask"], batch["step_token_mask"])
        logps = torch.log_softmax(module.policy(input_ids=batch["input_ids"]).logits.float(), -1)
    for i in range(len(scores)):
        ends = (batch["step_labels"][i] != IGNORE_INDEX).nonzero().flatten().tolist()
        counted = batch["step_token_mask"][i].nonzero().flatten().tolist()
        for end in ends:
            lowest = min(logps[i, t - 1, batch["input_ids"][i, t]].item() for t in counted if t < end)
            assert scores[i, end].item() == pytest.approx(0.7 * min(lowest, 0.0) + 1.5, abs=1e-4)
    loss = module.training_step(batch, 0)  # trains through the log-probs
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.policy.parameters())


def test_likelihood_scorer_reads_the_solution_not_the_prompt(tmp_path):
    """The scorer's likelihood PRM counts the solution's tokens only: on the model's own greedy answer (likely) after
    a prompt it cannot predict (unlikely), its score is that of the answer, as the module reads it."""
    module, data, folder = _trained(tmp_path, "likelihood")
    scorer = build_scorer(str(folder)).functions[0]
    prompt = [{"role": "user", "content": "What is 2 + 3? ~#@ qz"}]
    ids = data.tokenizer(data.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                         add_special_tokens=False, return_tensors="pt").input_ids  # fmt: skip
    module.eval()
    with torch.no_grad():
        out = module.policy.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=data.tokenizer.pad_token_id)
    answer = data.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    got = scorer.step_scores([prompt], [answer])[0]
    ids, ends = tokenize_steps(data.tokenizer, prompt, [answer], "\n")
    counted = torch.zeros(1, len(ids), dtype=torch.bool)
    counted[0, len(prompt_ids(data.tokenizer, prompt)) :] = True
    counted[0, ends] = False
    with torch.no_grad():
        expected = module(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), counted)[0, ends].sigmoid()
        everything = module(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), counted | True)
    assert got == pytest.approx(expected.tolist(), abs=1e-5)
    assert everything[0, ends].sigmoid().item() < expected[0].item() - 0.05  # the prompt would have lowered it
