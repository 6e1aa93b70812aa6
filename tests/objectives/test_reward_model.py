import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
)

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.embedded import embedded_model_path
from lit_align.errors import ModelLoadError
from lit_align.objectives import RewardModel
from lit_align.rewards.model import RewardModelScorer
from lit_align.roles.models import ModelSpec, expand_blocks, frozen_lm_head, load_policy
from lit_align.runtime.callbacks import SaveHuggingFace
from lit_align.tasks.arithmetic import make_rows

TINY = "lit-align/tiny-sft"


def test_reward_model_trains_logs_and_its_export_scores_pairs(tmp_path):
    module = RewardModel(policy=ModelSpec(name_or_path=TINY), optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))
    data = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=32, num_val_rows=8), batch_size=8)
    out = tmp_path / "rm"
    trainer = Trainer(
        max_steps=4,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=4,
        num_sanity_val_steps=0,
        callbacks=[SaveHuggingFace(dirpath=str(out))],
    )
    trainer.fit(module, data)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"train/loss", "train/accuracy", "train/margin", "val/accuracy", "val/margin"} <= set(rows[0])
    # the exported folder scores (prompt, completion) exactly like the trained module
    scorer = RewardModelScorer(str(out))
    pair = make_rows("pairwise", "validation", 8)[0]
    scores = scorer([pair["prompt"], pair["prompt"]], [pair["chosen"], pair["rejected"]])
    row = data.rows["val"][0]
    module.policy.eval()
    with torch.no_grad():
        direct = [
            module(ids, torch.ones_like(ids)).item()
            for ids in (torch.tensor([row["prompt_ids"] + row[k]]) for k in ("chosen_ids", "rejected_ids"))
        ]
    assert scores == pytest.approx(direct, abs=1e-5)


def _pair_batch(n=4):
    data = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=n, num_val_rows=n), batch_size=n)
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def test_regulariser_is_the_language_models_own_nll_on_chosen_and_expanded_blocks_start_as_identity():
    """At initialisation, with 2 new identity blocks, the ``nll`` term equals the causal LM's loss on the chosen
    completions (transformers' own mean token cross-entropy), and the expanded model scores like the plain one."""
    batch = _pair_batch()
    torch.manual_seed(0)
    plain = RewardModel(policy=ModelSpec(name_or_path=TINY))
    plain.configure_model()
    module = RewardModel(policy=ModelSpec(name_or_path=TINY), sft_weight=0.5, expand_layers=2)
    module.configure_model()
    module.policy.score.load_state_dict(plain.policy.score.state_dict())
    layers = len(module.policy.model.layers)
    assert layers == len(plain.policy.model.layers) + 2 == module.policy.config.num_hidden_layers
    logged = {}
    module.log_dict = lambda values, **_: logged.update(values)  # collect what log_metrics sends
    loss = module._shared_step(batch, "train")
    lm = AutoModelForCausalLM.from_pretrained(embedded_model_path(TINY))
    chosen = {k: v.chunk(2)[0] for k, v in batch.items() if k != "index"}
    expected_nll = lm(**chosen).loss
    assert logged["train/nll"].item() == pytest.approx(expected_nll.item(), abs=1e-5)
    with torch.no_grad():
        scores = module(batch["input_ids"], batch["attention_mask"])
        plain_scores = plain(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(scores, plain_scores, atol=1e-5)
    c, r = scores.chunk(2)
    bt = -torch.nn.functional.logsigmoid(c - r).mean()
    assert loss.item() == pytest.approx(bt.item() + 0.5 * expected_nll.item(), abs=1e-5)


def test_lm_head_of_an_untied_model_is_read_from_its_checkpoint(tmp_path):
    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        tie_word_embeddings=False, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    lm = LlamaForCausalLM(config)
    lm.save_pretrained(tmp_path)
    spec = ModelSpec(name_or_path=str(tmp_path))
    model = load_policy(spec, head="reward")
    head = frozen_lm_head(spec, model)
    assert torch.equal(head, lm.lm_head.weight.detach())
    assert not torch.equal(head, model.get_input_embeddings().weight.detach())


def test_expansion_refuses_qlora_and_non_llama_blocks():
    with pytest.raises(ModelLoadError, match="expand_layers cannot be used with finetune: qlora"):
        load_policy(ModelSpec(name_or_path=TINY, finetune="qlora"), head="reward", expand_layers=1)
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, num_labels=1))
    with pytest.raises(ModelLoadError, match="Llama-style blocks"):
        expand_blocks(gpt2, 1)


def test_expanded_reward_model_exports_and_reloads_with_its_extra_blocks(tmp_path):
    module = RewardModel(policy=ModelSpec(name_or_path=TINY), expand_layers=1, sft_weight=1.0,
                         optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))  # fmt: skip
    data = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=16, num_val_rows=4), batch_size=4)
    out = tmp_path / "rm"
    trainer = Trainer(
        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[SaveHuggingFace(dirpath=str(out))],
    )  # fmt: skip
    trainer.fit(module, data)
    new_block = module.policy.model.layers[-1]
    assert new_block.mlp.down_proj.weight.abs().sum() > 0, "the zero-initialised projection must train"
    batch = _pair_batch()
    module.policy.eval()
    with torch.no_grad():
        direct = module(batch["input_ids"], batch["attention_mask"])
        reloaded = AutoModelForSequenceClassification.from_pretrained(out)(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits.squeeze(-1)
    assert torch.allclose(direct, reloaded, atol=1e-5)


def test_expansion_and_regulariser_under_lora_train_the_new_blocks_adapters():
    lora = ModelSpec(name_or_path=TINY, finetune="lora", lora_r=4)
    module = RewardModel(policy=lora, expand_layers=1, sft_weight=1.0)
    module.configure_model()
    module.log_dict = lambda *_, **__: None
    module._shared_step(_pair_batch(), "train").backward()
    new_block = [(n, p) for n, p in module.policy.named_parameters() if ".layers.4." in n and p.requires_grad]
    assert new_block and all("lora_" in n for n, _ in new_block)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in new_block)
