import csv
import math

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger
from transformers import AutoModelForCausalLM

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.errors import LitAlignError
from lit_align.losses.specs import PREFERENCE_LOSSES
from lit_align.objectives import DPO, ORPO, SimPO
from lit_align.roles.models import ModelSpec
from lit_align.roles.paths import resolve_model_path
from lit_align.roles.reference import ReferenceSpec

TINY = "lit-align/tiny-sft"


def _data():
    dm = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=32, num_val_rows=8), batch_size=8)
    dm.setup("fit")
    return dm


def _trainer(tmp_path, steps):
    return Trainer(
        max_steps=steps,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=steps,
        num_sanity_val_steps=0,
    )


def _first_step_loss(spec, reference, batch, dm):
    torch.manual_seed(0)
    module = DPO(policy=spec, reference=reference, beta=0.1)
    module.configure_model()
    module.reference.precompute(dm, lambda b: b)
    module.policy.eval()  # no dropout: the kinds must agree exactly
    with torch.no_grad():
        logps, lengths = module(batch)
        ref = module.reference.logps(batch, "train")
        out = module.loss(*logps.chunk(2), *lengths.chunk(2), *ref.chunk(2))
        return out.loss, logps, ref


def test_reference_kinds_give_the_same_first_step_loss(tmp_path):
    dm = _data()
    batch = next(iter(dm.splits.loader("train", shuffle=False)))
    full = ModelSpec(name_or_path=TINY)
    lora = ModelSpec(name_or_path=TINY, finetune="lora", lora_r=4)
    folder = tmp_path / "same"
    AutoModelForCausalLM.from_pretrained(resolve_model_path(TINY)).save_pretrained(folder)
    copy_loss, logps, ref = _first_step_loss(full, "copy", batch, dm)
    adapter_loss, _, _ = _first_step_loss(lora, "adapter", batch, dm)
    pre_loss, _, pre_ref = _first_step_loss(full, "precomputed", batch, dm)
    model_loss, _, model_ref = _first_step_loss(
        full, ReferenceSpec("model", ModelSpec(name_or_path=str(folder))), batch, dm
    )
    # before any update the policy equals its reference: every log-ratio is 0 and the loss is log 2
    assert torch.allclose(logps, ref)
    assert copy_loss.item() == pytest.approx(math.log(2), abs=1e-6)
    for other in (adapter_loss, pre_loss, model_loss):
        assert other.item() == pytest.approx(copy_loss.item(), abs=1e-6)
    assert torch.allclose(pre_ref, ref, atol=1e-5) and torch.allclose(model_ref, ref, atol=1e-6)


def test_separate_reference_model_gives_hand_computed_margins(tmp_path):
    """Policy tiny-sft, reference a perturbed copy saved to a folder: the logged margins are
    beta * mean_b [(pi_c - ref_c) - (pi_r - ref_r)] from the two models' own log-probs."""
    torch.manual_seed(1)
    other = AutoModelForCausalLM.from_pretrained(resolve_model_path(TINY))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other.save_pretrained(tmp_path / "ref")
    beta = 0.3
    module = DPO(
        policy=ModelSpec(name_or_path=TINY),
        beta=beta,
        reference=ReferenceSpec(kind="model", model=ModelSpec(name_or_path=str(tmp_path / "ref"))),
    )
    dm = PairwiseDataModule(tokenizer=TINY, source=DataSource(num_rows=8, num_val_rows=8), batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    policy = AutoModelForCausalLM.from_pretrained(resolve_model_path(TINY)).eval()

    def summed(model):
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1)
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * mask).sum(-1)

    pc, pr = summed(policy).chunk(2)
    rc, rr = summed(other.eval()).chunk(2)
    expected = (beta * ((pc - rc) - (pr - rr))).mean().item()
    assert abs(expected) > 1e-3  # the two models really differ on this batch
    trainer = _trainer(tmp_path, 1)
    (metrics,) = trainer.validate(module, dm, verbose=False)
    assert metrics["val/rewards/margins"] == pytest.approx(expected, abs=1e-4)
    assert not any(p.requires_grad for p in module.reference.parameters())


@pytest.mark.parametrize("loss_type", list(PREFERENCE_LOSSES))
def test_every_preference_loss_trains_and_logs_trl_metric_names(tmp_path, loss_type):
    module = DPO(
        policy=ModelSpec(name_or_path=TINY), loss_type=loss_type, optimizer=lambda p: torch.optim.AdamW(p, 1e-4)
    )
    module.configure_model()
    spec = PREFERENCE_LOSSES[loss_type]
    assert (module.reference.model is not None) == spec.needs_reference  # reference-free losses hold no reference
    before = {n: p.detach().clone() for n, p in module.policy.named_parameters()}
    ref_before = {n: p.detach().clone() for n, p in module.reference.named_parameters()}
    trainer = _trainer(tmp_path, 3)
    trainer.fit(module, _data())
    assert any(not p.equal(before[n]) for n, p in module.policy.named_parameters())
    assert all(p.equal(ref_before[n]) for n, p in module.reference.named_parameters())
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    names = {
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "lengths/chosen",
        "lengths/rejected",
        "loss",
    }
    names |= {"kl"} if spec.needs_reference else set()
    names |= {"nll"} if spec.sft_weight else set()
    for stage in ("train", "val"):
        assert {f"{stage}/{n}" for n in names} <= set(rows[0]), sorted(rows[0])
    assert ("train/kl" in rows[0]) == spec.needs_reference and ("train/nll" in rows[0]) == bool(spec.sft_weight)
    losses = [float(r["train/loss"]) for r in rows if r["train/loss"]]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_checkpoint_leaves_out_the_frozen_reference(tmp_path):
    module = DPO(policy=ModelSpec(name_or_path=TINY), reference="copy")
    module.configure_model()
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and not any(k.startswith("reference.") for k in checkpoint["state_dict"])


def test_reference_kind_must_fit_the_finetune_mode_and_the_loss():
    with pytest.raises(LitAlignError, match="'adapter' needs policy.finetune lora or qlora"):
        DPO(policy=ModelSpec(name_or_path=TINY), reference="adapter")
    with pytest.raises(LitAlignError, match="reference: this loss uses no reference"):
        DPO(policy=ModelSpec(name_or_path=TINY), loss_type="simpo", reference="copy")
    with pytest.raises(LitAlignError, match="reference.model: kind 'model' needs"):
        DPO(policy=ModelSpec(name_or_path=TINY), reference="model")
    with pytest.raises(LitAlignError, match="label_smoothing: loss_type 'ipo' does not use it"):
        DPO(policy=ModelSpec(name_or_path=TINY), loss_type="ipo", label_smoothing=0.1)


def test_precomputed_needs_a_data_module_that_declares_ordered_splits(tmp_path):
    from lit_align.data import SFTDataModule

    module = DPO(policy=ModelSpec(name_or_path=TINY), reference="precomputed")
    module.configure_model()
    with pytest.raises(
        LitAlignError, match="'precomputed' needs a data module with ordered_dataloaders.*SFTDataModule"
    ):
        module.reference.precompute(SFTDataModule(), lambda b: b)


def test_sft_weight_and_normalisation_reach_the_loss():
    module = DPO(policy=ModelSpec(name_or_path=TINY), sft_weight=0.5, nll_normalization="sequence")
    assert module.loss.sft_weight == 0.5 and module.loss.nll_normalization == "sequence"
    assert DPO(policy=ModelSpec(name_or_path=TINY), loss_type="rpo").loss.sft_weight == 1.0  # the spec's default


def test_old_simpo_and_orpo_class_paths_build_the_same_specs():
    with pytest.warns(FutureWarning, match="SimPO: 'gamma' is deprecated, use 'simpo_gamma'"):
        simpo = SimPO(policy=ModelSpec(name_or_path=TINY), beta=2.5, gamma=0.3)
    assert simpo.loss.name == "simpo" and simpo.loss.params == {"beta": 2.5, "simpo_gamma": 0.3}
    assert SimPO(policy=ModelSpec(name_or_path=TINY), sft_weight=1.0).loss.name == "cpo_simpo"
    with pytest.warns(FutureWarning, match="ORPO: 'lam' is deprecated, use 'beta'"):
        orpo = ORPO(policy=ModelSpec(name_or_path=TINY), lam=0.2)
    assert orpo.loss.name == "orpo" and orpo.loss.params == {"beta": 0.2} and orpo.loss.sft_weight == 1.0
    assert simpo.reference.kind == orpo.reference.kind == "none"
    assert "lam" not in orpo.hparams and "gamma" not in simpo.hparams
    with pytest.raises(LitAlignError, match="model.init_args.lam: give only 'beta'"):
        ORPO(policy=ModelSpec(name_or_path=TINY), beta=0.2, lam=0.5)


def test_row_counts_reach_the_csv_log(tmp_path):
    from tests.helpers import write_jsonl

    long = "x" * 80
    rows = [{"prompt": "a", "chosen": long, "rejected": "y" + long}, {"prompt": "b", "chosen": "1", "rejected": "2"}]
    dm = PairwiseDataModule(
        tokenizer=TINY,
        source=DataSource(path=str(write_jsonl(tmp_path / "p.jsonl", rows)), val_split=None),
        max_length=32,
        batch_size=2,
    )
    trainer = _trainer(tmp_path, 1)
    with pytest.warns(UserWarning, match="1 truncated"):
        trainer.fit(DPO(policy=ModelSpec(name_or_path=TINY)), dm)
    with open(trainer.logger.log_dir + "/metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("data/train/rows")]
    assert float(logged[0]["data/train/rows"]) == 2 and float(logged[0]["data/train/truncated"]) == 1
