"""A colocated vLLM rollout engine (optional ``vllm`` extra; needs a GPU).

vLLM runs in the training process on the same GPU as the policy, loads its own copy of the weights from the policy's
folder, and receives the policy's current weights before every rollout that follows an optimizer step. Not
testable on the CPU machines this project is developed on: the tests run this adapter against a stand-in ``vllm``
module that records what it is given (tests/rollout/test_engines.py), so the calls and the weight names are
checked, not vLLM itself.

Shape legend: N completions, P prompt length (left-padded), R completion length.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from lit_align.errors import ConfigError
from lit_align.rollout.engines import ENGINE_KEY, RolloutEngine, RolloutSpec
from lit_align.rollout.sampling import SamplingConfig


class VLLMEngine(RolloutEngine):
    """Samples with ``vllm.LLM.generate`` on token ids; weights synced through the engine's ``load_weights``.

    Seeds: each request gets a seed drawn from torch's global generator, so a seeded run repeats its samples
    (vLLM's tokens differ from transformers' for the same seed: a different sampler).
    """

    def __init__(self, spec: RolloutSpec, model_path: str | None = None) -> None:
        """See :class:`~lit_align.rollout.engines.RolloutEngine`; vLLM is imported here so a missing one fails first."""
        super().__init__(spec, model_path)
        try:
            import vllm
        except ImportError as error:
            raise ConfigError(
                f"{ENGINE_KEY}.engine", "vllm is not installed: pip install 'lit-align[vllm]' (GPU only)"
            ) from error
        if model_path is None:
            raise ConfigError(f"{ENGINE_KEY}.engine", "vllm needs the policy's model folder or hub name")
        self.vllm = vllm
        self.llm = vllm.LLM(
            model=model_path,
            dtype=spec.dtype,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            max_model_len=spec.max_model_len,
            enable_prefix_caching=True,
        )

    def sync(self, policy: torch.nn.Module) -> None:
        """Load the policy's weights (LoRA merged in, under Hugging Face names) into vLLM's model."""
        runner_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        for name, tensor in hf_weights(policy):
            runner_model.load_weights([(name, tensor)])
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights

    def generate_ids(
        self,
        policy: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sampling: SamplingConfig,
        *,
        pad_token_id: int,
        stop_ids: list[int],
    ) -> torch.Tensor:
        """One request per prompt row (padding removed); completions right-padded to the longest. (N, P) -> (N, R)."""
        rows = zip(input_ids, attention_mask, strict=True)
        prompts = [{"prompt_token_ids": ids[mask.bool()].tolist()} for ids, mask in rows]
        params = [
            self.vllm.SamplingParams(
                n=1,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                stop_token_ids=stop_ids,
                seed=int(torch.randint(2**31 - 1, ()).item()),
            )
            for _ in prompts
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        completions = [list(out.outputs[0].token_ids) for out in outputs]
        longest = max(1, *(len(c) for c in completions))
        padded = [c + [pad_token_id] * (longest - len(c)) for c in completions]
        return torch.tensor(padded, dtype=torch.long, device=input_ids.device)


def hf_weights(policy: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The policy's weights under the names of its Hugging Face checkpoint, with a LoRA adapter merged in.

    Merged weights are computed out of place (base weight + the adapter's delta), so the policy is never modified:
    merging and unmerging in place would drift the base weights by rounding at every sync.
    """
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    adapted = {
        name: m for name, m in base.named_modules() if hasattr(m, "get_delta_weight") and hasattr(m, "base_layer")
    }
    with torch.no_grad():
        for name, param in base.named_parameters():
            if "lora_" in name:  # folded into the base weight below
                continue
            owner, _, leaf = name.rpartition(".base_layer.")
            weight = param
            if owner in adapted and leaf == "weight":
                layer = adapted[owner]
                weight = param + sum(layer.get_delta_weight(adapter) for adapter in layer.active_adapters)
            yield name.replace(".base_layer", ""), weight.detach()
