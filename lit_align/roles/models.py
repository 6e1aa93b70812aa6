# Over 400 lines on purpose: model loading, its heads, LoRA / QLoRA and saving share ModelSpec and one loader;
# splitting them would scatter one contract.
"""Model roles: load a policy (full, LoRA or QLoRA), a frozen model, a reward backbone; save in HF format.

Every objective builds its roles through these functions inside ``configure_model()``, so a sharding strategy can
wrap what they return. Paths go through :func:`resolve_model_path`, which knows the embedded models, refuses
missing local folders with a one-line error, and leaves anything else to the Hugging Face hub.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import torch
from peft import (
    LoraConfig,
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    prepare_model_for_kbit_training,
    set_peft_model_state_dict,
)
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BitsAndBytesConfig,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lit_align.domains import DropoutRate, PositiveInt, check_fields
from lit_align.errors import ModelLoadError
from lit_align.roles.paths import (
    GGUF_SUFFIX,
    POLICY_KEY,
    adapter_base,
    first_line,
    hf_location,
    record_base,
    resolve_model_path,
)
from lit_align.roles.tokenizer import load_tokenizer

Head = Literal["causal_lm", "reward", "token_reward"]
"""``causal_lm``: a language model (policies); ``reward``: one scalar per sequence (AutoModelForSequenceClassification,
reward models); ``token_reward``: one scalar per token (AutoModelForTokenClassification, process reward models)."""
AUTO_CLASSES = {
    "causal_lm": AutoModelForCausalLM,
    "reward": AutoModelForSequenceClassification,
    "token_reward": AutoModelForTokenClassification,
}
LORA_TASKS = {"causal_lm": "CAUSAL_LM", "reward": "SEQ_CLS", "token_reward": "TOKEN_CLS"}
_SKELETONS = contextvars.ContextVar("lit_align_skeletons", default=False)


class Finetune(StrEnum):
    """How the policy's weights train; members carry their capabilities."""

    FULL = "full"
    LORA = "lora"
    QLORA = "qlora"

    @property
    def has_adapter(self) -> bool:
        """True when only LoRA adapter weights train (and the reference is the adapter-disabled base)."""
        return self is not Finetune.FULL

    @property
    def quantized(self) -> bool:
        """True when the base weights load in 4-bit nf4 through bitsandbytes."""
        return self is Finetune.QLORA


@dataclass(frozen=True)
class ModelSpec:
    """What to load for a model role and how it trains.

    Args:
        name_or_path: Hugging Face hub id, local folder, local ``.gguf`` file (de-quantized as it loads), or an
            embedded model (``lit-align/tiny-base``, ``lit-align/tiny-sft``, ``lit-align/smollm2-135m-instruct``
            with the ``real`` extra).
        finetune: ``full`` trains every weight; ``lora`` trains LoRA adapters; ``qlora`` trains LoRA adapters on a
            4-bit nf4 base (bitsandbytes).
        dtype: Weight dtype: ``auto`` (as stored), ``float32``, ``bfloat16`` or ``float16``.
        attn_implementation: Attention kernel passed to transformers (``eager``, ``sdpa``, ``flash_attention_2``);
            None lets transformers choose.
        gradient_checkpointing: Recompute activations in the backward pass to save memory.
        trust_remote_code: Run modelling code shipped with a hub model. Off unless you trust its author.
        revision: Hub revision (branch, tag or commit) to load.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (scale = alpha / r).
        lora_dropout: Dropout on the LoRA branch.
        lora_target_modules: Module names that get adapters, or ``all-linear``.
        bnb_compute_dtype: QLoRA matmul dtype (``float32`` on CPU, ``bfloat16`` on recent GPUs).
        bnb_quant_storage: dtype that stores packed 4-bit weights; ``float32``/``bfloat16`` lets FSDP shard them.

    """

    name_or_path: str = "lit-align/tiny-sft"
    finetune: Literal["full", "lora", "qlora"] = "full"
    dtype: str = "auto"
    attn_implementation: str | None = None
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    revision: str | None = None
    lora_r: PositiveInt = 16
    lora_alpha: PositiveInt = 32
    lora_dropout: DropoutRate = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    bnb_compute_dtype: str = "float32"
    bnb_quant_storage: str = "uint8"

    def __post_init__(self) -> None:
        """Refuse values outside their domain (see :mod:`lit_align.domains`)."""
        check_fields(self)


def _torch_dtype(name: str) -> torch.dtype | str:
    if name == "auto":
        return "auto"
    if name not in ("float32", "bfloat16", "float16"):
        raise ModelLoadError(f"{POLICY_KEY.rsplit('.', 1)[0]}.dtype: unknown dtype '{name}'")
    return getattr(torch, name)


def load_pretrained(auto_class: type, path: str, **kwargs: Any) -> PreTrainedModel:
    """``auto_class.from_pretrained`` of a resolved path; a ``.gguf`` file comes back as an ordinary model.

    transformers loads a GGUF file (``gguf_file=``) de-quantized but keeps it marked as quantized, so
    ``save_pretrained`` refuses it; the weights are moved into a model built from the same config without that
    entry, so a GGUF model trains, checkpoints and exports like any other.
    """
    location, gguf = hf_location(path)
    model = auto_class.from_pretrained(location, **gguf, **kwargs)
    return _plain(model) if gguf else model


@contextmanager
def skeletons(enabled: bool = True) -> Iterator[None]:
    """Inside, models load as skeletons: built from their config on the meta device, no weights read.

    For processes that receive every weight from rank 0 after sharding (:class:`~lit_align.runtime.sharding.
    FSDP2Strategy`), so only one process ever holds a whole model. 4-bit (QLoRA) models and adapter folders still
    load as usual: their weights are quantised or attached as they load.
    """
    token = _SKELETONS.set(enabled)
    try:
        yield
    finally:
        _SKELETONS.reset(token)


def is_skeleton(model: torch.nn.Module) -> bool:
    """True when some weight of ``model`` is on the meta device (built by :func:`skeletons`, not yet filled)."""
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def _skeleton(auto_class: type, path: str, kwargs: dict[str, Any]) -> PreTrainedModel:
    """A model of ``path``'s architecture, config and generation config, with every tensor on the meta device."""
    location, gguf = hf_location(path)
    options = {k: kwargs[k] for k in ("trust_remote_code", "revision", "num_labels") if k in kwargs}  # config
    config = AutoConfig.from_pretrained(location, **gguf, **options)
    config.__dict__.pop("quantization_config", None)
    build = {"trust_remote_code": kwargs["trust_remote_code"]}
    if kwargs["dtype"] != "auto":
        build["dtype"] = kwargs["dtype"]
    if "attn_implementation" in kwargs:
        build["attn_implementation"] = kwargs["attn_implementation"]
    with torch.device("meta"):
        model = auto_class.from_config(config, **build)
    with contextlib.suppress(OSError):  # no generation_config.json: the one derived from the config stays
        model.generation_config = GenerationConfig.from_pretrained(location, **gguf, revision=kwargs["revision"])
    return model.eval()


def _plain(model: PreTrainedModel) -> PreTrainedModel:
    config = copy.deepcopy(model.config)
    config.__dict__.pop("quantization_config", None)
    with torch.device("meta"):
        plain = type(model)(config)
    plain.load_state_dict(model.state_dict(), assign=True)
    buffers = dict(model.named_buffers())  # non-persistent ones (rotary frequencies) are not in the state dict
    for name, buffer in list(plain.named_buffers()):
        if buffer.is_meta:
            owner, _, attr = name.rpartition(".")
            plain.get_submodule(owner)._buffers[attr] = buffers[name]
    plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain.eval()


def _load_model(
    spec: ModelSpec, *, quantize: bool, device: torch.device | None = None, head: Head = "causal_lm"
) -> PreTrainedModel:
    kwargs: dict = {
        "dtype": _torch_dtype(spec.dtype),
        "trust_remote_code": spec.trust_remote_code,
        "revision": spec.revision,
    }
    if spec.attn_implementation is not None:
        kwargs["attn_implementation"] = spec.attn_implementation
    if quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=getattr(torch, spec.bnb_compute_dtype),
            bnb_4bit_quant_storage=getattr(torch, spec.bnb_quant_storage),
        )
        # 4-bit weights are quantised where they are loaded, so load them on the device they will run on.
        kwargs["device_map"] = {"": device or torch.device("cpu")}
    path = resolve_model_path(spec.name_or_path)
    if quantize and path.endswith(GGUF_SUFFIX):
        raise ModelLoadError(
            f"{POLICY_KEY}: finetune: qlora cannot quantize a .gguf file as it loads; save it as a Hugging Face "
            "folder first (lit-align export, or save_pretrained of the loaded model) and give that folder"
        )
    base = adapter_base(path)  # an adapter folder: load the base it records (resolved as any name), then the adapter
    auto_class = AUTO_CLASSES[head]
    if head != "causal_lm":
        kwargs["num_labels"] = 1  # one scalar per sequence (or token); the new head starts random
    try:
        if _SKELETONS.get() and not quantize and not base:
            return _skeleton(auto_class, path, kwargs)
        model = load_pretrained(auto_class, resolve_model_path(base) if base else path, **kwargs)
        if base:
            model.load_adapter(path)
        if quantize:
            keep_4bit_weights_trainable(model)
        return model
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{POLICY_KEY}: cannot load model '{spec.name_or_path}': {first_line(error)}") from error


def keep_4bit_weights_trainable(model: torch.nn.Module) -> None:
    """Turn off bitsandbytes' CPU repacking of 4-bit weights, which breaks training after any inference forward.

    On a CPU with AVX512-BF16, bitsandbytes (0.50) repacks a ``Linear4bit``'s weights in place the first time it runs
    in eval mode without gradients (a validation batch, a rollout, the win-rate callback) and from then on multiplies
    through a kernel with no autograd: gradients stop at every 4-bit layer, silently ("an autograd kernel was not
    registered"). LoRA training on a 4-bit base then barely moves. Keeping the standard layout costs inference speed
    on such CPUs only.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def load_policy(
    spec: ModelSpec, *, device: torch.device | None = None, head: Head = "causal_lm", expand_layers: int = 0
) -> PreTrainedModel | PeftModel:
    """Build the trainable model: the full model, or the model with LoRA adapters (on a 4-bit base for QLoRA).

    Args:
        spec: What to load and how it trains.
        device: Where 4-bit weights are quantised (QLoRA only); other roles load on CPU and Lightning moves them.
        head: ``causal_lm`` for policies, ``reward`` for a scalar sequence-classification head (reward models),
            ``token_reward`` for a scalar per token (process reward models; see :data:`Head`).
        expand_layers: New identity-initialised blocks stacked on the loaded ones (:func:`expand_blocks`), before
            any adapter is added; not with QLoRA (the copied 4-bit weights cannot be zeroed).

    """
    finetune = Finetune(spec.finetune)
    if expand_layers and finetune.quantized:
        raise ModelLoadError(f"{POLICY_KEY}: expand_layers cannot be used with finetune: qlora (use full or lora)")
    model = _load_model(spec, quantize=finetune.quantized, device=device, head=head)
    if expand_layers:
        expand_blocks(model, expand_layers)
    if head == "reward" and model.config.pad_token_id is None:
        tokenizer = load_tokenizer(spec.name_or_path, trust_remote_code=spec.trust_remote_code)
        model.config.pad_token_id = tokenizer.pad_token_id
    if finetune.quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    elif spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if finetune.has_adapter:
        model = get_peft_model(model, _lora_config(spec, head))
    return model.train()  # from_pretrained returns eval mode; dropout and Lightning expect train mode


def frozen_lm_head(spec: ModelSpec, model: torch.nn.Module) -> torch.Tensor:
    """Return a detached copy of the causal-LM output embedding for a reward model built from ``spec``.

    A sequence-classification model has no LM head. Tied models (``tie_word_embeddings``) reuse their input
    embedding, copied from ``model``; otherwise the checkpoint's LM head is read by loading the causal LM once on
    the CPU (a transient second copy of the weights). Shape: (V, D)
    """
    if model.config.get_text_config().tie_word_embeddings:
        return model.get_input_embeddings().weight.detach().clone()
    head = _load_model(spec, quantize=False, head="causal_lm").get_output_embeddings()
    if head is None:
        raise ModelLoadError(f"{POLICY_KEY}: model '{spec.name_or_path}' has no language-model head to regularise with")
    return head.weight.detach().clone()


def expand_blocks(model: PreTrainedModel, count: int) -> None:
    """Stack ``count`` new decoder blocks on a Llama-style model, each starting as the identity (in place).

    Block expansion (LLaMA Pro, Wu et al., 2024; arXiv:2401.02415): each new block copies the last block and zeroes
    its attention output (``o_proj``) and MLP output (``down_proj``) projections, so the residual stream passes
    through unchanged until training moves them. The config's ``num_hidden_layers`` follows, so the saved model
    loads with the extra blocks.

    Raises:
        ModelLoadError: The model's blocks are not at ``model.model.layers`` with ``o_proj`` / ``down_proj``.

    """
    blocks = getattr(getattr(model, "model", None), "layers", None)
    last = blocks[-1] if isinstance(blocks, torch.nn.ModuleList) and len(blocks) else None
    if last is None or not hasattr(getattr(last, "self_attn", None), "o_proj") or not hasattr(last.mlp, "down_proj"):
        raise ModelLoadError(
            f"{POLICY_KEY}: expand_layers needs Llama-style blocks (model.layers[i].self_attn.o_proj, mlp.down_proj), "
            f"not {type(model).__name__}"
        )
    config = model.config
    for _ in range(count):
        block = copy.deepcopy(last)
        block.self_attn.layer_idx = len(blocks)
        torch.nn.init.zeros_(block.self_attn.o_proj.weight)
        torch.nn.init.zeros_(block.mlp.down_proj.weight)
        blocks.append(block)
    config.num_hidden_layers = len(blocks)
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types) + [config.layer_types[-1]] * count


def _lora_config(spec: ModelSpec, head: Head = "causal_lm") -> LoraConfig:
    return LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=spec.lora_target_modules,
        task_type=LORA_TASKS[head],  # SEQ_CLS and TOKEN_CLS also train the new score head
        # peft's all-linear leaves a sequence classifier's head out, not a token classifier's: the head is trained
        # whole (modules_to_save), so it must not also get an adapter.
        exclude_modules=["score", "classifier"] if head == "token_reward" else None,
    )


def load_frozen(spec: ModelSpec, *, device: torch.device | None = None) -> PreTrainedModel:
    """Load a model that never trains (a separate reference): eval mode, no gradients, 4-bit when ``qlora``.

    ``lora`` loads the folder as it is (an adapter folder loads as its base plus the adapter); no new adapter is
    added, since nothing trains.
    """
    quantized = Finetune(spec.finetune).quantized
    model = _load_model(spec, quantize=quantized, device=device)  # 4-bit weights load where they run
    if device is not None and not quantized and not is_skeleton(model):
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model


def save_hf(
    policy: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    *,
    spec: ModelSpec,
    merge_adapter: bool = True,
    head: Head = "causal_lm",
) -> Path:
    """Save the policy (or reward model, ``head="reward"``) and its tokenizer as a Hugging Face folder.

    A LoRA policy is saved as the adapter alone, or merged into its base when ``merge_adapter`` is True. A QLoRA
    adapter is merged into a freshly loaded full-precision base (merging into 4-bit weights would lose precision).
    An adapter alone names its base as :func:`~lit_align.roles.paths.base_reference` says (a hub id, an absolute
    folder, or an embedded model's name), not as the folder it was loaded from.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(policy, PeftModel) and merge_adapter:
        if Finetune(spec.finetune).quantized:
            base = _load_model(spec, quantize=False, head=head)
            merged = get_peft_model(base, _lora_config(spec, head))
            set_peft_model_state_dict(merged, {k: v.cpu() for k, v in get_peft_model_state_dict(policy).items()})
        else:
            merged = copy.deepcopy(policy).cpu()
        merged.merge_and_unload().save_pretrained(out)
    else:
        policy.save_pretrained(out)
        if isinstance(policy, PeftModel):
            record_base(out, spec.name_or_path)
    tokenizer.save_pretrained(out)
    return out


# Checkpoints keep the module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([ModelSpec])
