"""The reference component: kinds, refresh (hard and soft), and checkpoints that keep a refreshed reference."""

import pytest
import torch
from lightning import Callback
from transformers import AutoModelForCausalLM

from lit_align.data import DataSource, PairwiseDataModule
from lit_align.embedded import embedded_model_path
from lit_align.errors import LitAlignError
from lit_align.objectives import DPO
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.reference import Reference, ReferenceSpec
from tests.roles.test_models import _batch, _train_steps
from tests.runtime.test_callbacks import _fit

BASE = "lit-align/tiny-sft"


def test_lora_trains_only_adapters_and_reference_is_the_base():
    base = AutoModelForCausalLM.from_pretrained(embedded_model_path(BASE)).eval()
    spec = ModelSpec(name_or_path=BASE, finetune="lora", lora_r=4, lora_dropout=0.0)
    policy = load_policy(spec)
    reference = Reference("auto", finetune="lora")
    reference.build(policy)
    assert reference.kind == "adapter" and reference.model is None  # no second copy under LoRA
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen_before = {n: p.detach().clone() for n, p in policy.named_parameters() if not p.requires_grad}
    _train_steps(policy)
    policy.eval()
    assert all(p.equal(frozen_before[n]) for n, p in policy.named_parameters() if not p.requires_grad)
    batch = _batch()
    with reference.use() as ref:
        ref_logits = ref(**batch).logits
    base_logits = base(**batch).logits
    assert torch.allclose(ref_logits, base_logits, atol=1e-6)
    assert not torch.allclose(policy(**batch).logits, base_logits, atol=1e-3)  # the adapter did learn


def test_full_finetune_reference_is_a_frozen_copy():
    spec = ModelSpec(name_or_path=BASE)
    policy = load_policy(spec)
    reference = Reference("auto", finetune="full")
    reference.build(policy)
    assert reference.kind == "copy"
    assert all(p.requires_grad for p in policy.parameters())
    assert not any(p.requires_grad for p in reference.parameters())
    batch = _batch()
    with reference.use() as ref:
        before = ref(**batch).logits
    _train_steps(policy)
    with reference.use() as ref:
        assert torch.equal(ref(**batch).logits, before)


def test_hard_and_soft_refresh_by_hand():
    policy = load_policy(ModelSpec(name_or_path=BASE))
    reference = Reference(ReferenceSpec(kind="copy", refresh_every=100, refresh_mix=0.25))
    reference.build(policy)
    start = {n: p.detach().clone() for n, p in reference.model.named_parameters()}
    _train_steps(policy)
    trained = dict(policy.named_parameters())
    reference.refresh()  # soft: ref <- 0.25 policy + 0.75 ref
    for name, p in reference.model.named_parameters():
        assert torch.allclose(p, 0.25 * trained[name] + 0.75 * start[name], atol=1e-6), name
    reference.refresh(mix=1.0)  # hard
    assert all(torch.equal(p, trained[n]) for n, p in reference.model.named_parameters())
    assert not any(p.requires_grad for p in reference.parameters())
    with pytest.raises(LitAlignError, match="'adapter' reference cannot be refreshed"):
        Reference(ReferenceSpec(kind="adapter", refresh_every=2), finetune="lora")


def _dpo_with_refresh(every=2):
    module = DPO(
        policy=ModelSpec(name_or_path=BASE),
        reference=ReferenceSpec(kind="copy", refresh_every=every),
        optimizer=lambda p: torch.optim.AdamW(p, 1e-3),
    )
    return module, PairwiseDataModule(source=DataSource(num_rows=64, num_val_rows=4), batch_size=4)


class _PolicyAt(Callback):
    """Keep a copy of the policy's weights after optimizer step ``step``."""

    def __init__(self, step):
        self.step, self.weights = step, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            self.weights = {n: p.detach().clone() for n, p in pl_module.policy.named_parameters()}


def test_refreshed_reference_equals_the_policy_and_stays_frozen_between_refreshes(tmp_path):
    """refresh_every 2: the reference is the step-2 policy during steps 3 and 4; it is never optimised."""
    seen = _PolicyAt(2)
    trainer, module = _fit(tmp_path, _dpo_with_refresh, 4, callbacks=[seen])
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not any(id(p) in optimised or p.requires_grad for p in module.reference.parameters())
    assert module.reference.refreshes == 1 and module.reference.refreshed_at == 2
    for name, p in module.reference.model.named_parameters():
        assert torch.equal(p, seen.weights[name]), name
    assert any(not torch.equal(p, seen.weights[n]) for n, p in module.policy.named_parameters())  # steps 3-4 moved it
    # the next step would refresh again, to the current policy
    module.reference.maybe_refresh(4)
    assert all(
        torch.equal(p, dict(module.policy.named_parameters())[n]) for n, p in module.reference.model.named_parameters()
    )


def test_resume_after_a_refresh_matches_the_uninterrupted_run(tmp_path):
    """Refresh at step 2, checkpoint at step 3, resume to step 6 (another refresh at 4): the same weights as
    one run of 6 steps. Fails if the refreshed reference is left out of the checkpoint (the resumed run would score
    against the initial policy, or stop with an error)."""
    _, straight = _fit(tmp_path / "a", _dpo_with_refresh, 6)
    _fit(tmp_path / "b", _dpo_with_refresh, 3, save_every=3)
    ckpt = next((tmp_path / "b" / "ckpt").glob("*step=3*.ckpt"))
    state = torch.load(ckpt, weights_only=True)
    assert any(k.startswith("reference.model.") for k in state["state_dict"]) and state["reference"]["refreshes"] == 1
    _, resumed = _fit(tmp_path / "c", _dpo_with_refresh, 6, ckpt_path=ckpt, seed=123)
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    for a, b in zip(straight.reference.parameters(), resumed.reference.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_unrefreshed_copy_stays_out_of_the_checkpoint():
    module, _ = _dpo_with_refresh()
    module.configure_model()
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("reference.") for k in checkpoint["state_dict"])
    assert checkpoint["reference"]["refreshes"] == 0


def test_separate_reference_must_share_the_vocabulary(tmp_path):
    small = AutoModelForCausalLM.from_pretrained(embedded_model_path(BASE))
    small.resize_token_embeddings(small.get_input_embeddings().num_embeddings - 8)
    small.save_pretrained(tmp_path / "small")
    reference = Reference(ReferenceSpec(kind="model", model=ModelSpec(name_or_path=str(tmp_path / "small"))))
    with pytest.raises(LitAlignError, match="reference.model: .* must share the policy's tokenizer"):
        reference.build(load_policy(ModelSpec(name_or_path=BASE)))


def test_refresh_schedule_under_several_optimizer_steps_per_batch():
    """PPO / GRPO take several optimizer steps per batch, so a multiple of refresh_every can be stepped over."""
    policy = load_policy(ModelSpec(name_or_path=BASE))
    reference = Reference(ReferenceSpec(kind="copy", refresh_every=10))
    reference.build(policy)
    done = []
    for step in (0, 4, 8, 12, 16, 20, 24, 28, 32):
        before = reference.refreshes
        reference.maybe_refresh(step)
        if reference.refreshes > before:
            done.append(step)
    assert done == [12, 20, 32]  # the first batch start at or past 10, 20 and 30


def test_meaningless_reference_settings_are_refused():
    with pytest.raises(LitAlignError, match="this loss uses no reference"):
        Reference(ReferenceSpec(refresh_every=10), needed=False)  # GRPO with kl_coef 0 and a refresh schedule
    with pytest.raises(LitAlignError, match="refresh_mix: has no effect without refresh_every"):
        Reference(ReferenceSpec(kind="copy", refresh_mix=0.5))
    with pytest.raises(LitAlignError, match="'precomputed' needs fixed rows"):
        Reference("precomputed", fixed_rows=False)


def test_unrefreshed_checkpoint_loads_strictly():
    module, _ = _dpo_with_refresh()
    module.configure_model()
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    fresh, _ = _dpo_with_refresh()
    fresh.configure_model()
    fresh.on_load_checkpoint(checkpoint)  # fills the left-out copy from the rebuilt one
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    del checkpoint["state_dict"]["policy.lm_head.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        fresh.load_state_dict(checkpoint["state_dict"], strict=True)


def test_reference_runs_in_inference_mode_and_hands_back_plain_tensors():
    policy = load_policy(ModelSpec(name_or_path=BASE))
    reference = Reference("copy", finetune="full")
    reference.build(policy)
    with reference.use():
        assert torch.is_inference_mode_enabled()
    dm = PairwiseDataModule(source=DataSource(num_rows=4, num_val_rows=4), batch_size=4)
    dm.setup("fit")
    logps = reference.logps(next(iter(dm.val_dataloader())), "val")
    assert not logps.is_inference() and not logps.requires_grad  # usable in the loss's graph, carrying no graph
