"""Stand-ins for rollout engines: a fixed-answer engine and a ``vllm`` module that records what it is given."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from lit_align.rollout import RolloutEngine, SamplingConfig

FIXED_TEXT = "42"


class FixedEngine(RolloutEngine):
    """Answers every prompt with the same tokens and records the versions it was synced at."""

    versions: list = []  # class-level: the objective builds the instance itself
    syncs = 0

    def sync(self, policy: torch.nn.Module) -> None:
        FixedEngine.syncs += 1

    def rollout(self, policy, batch, sampling, *, pad_token_id, stop_ids, version=None):  # noqa: ANN001
        FixedEngine.versions.append(version)
        return super().rollout(policy, batch, sampling, pad_token_id=pad_token_id, stop_ids=stop_ids, version=version)

    def generate_ids(self, policy, input_ids, attention_mask, sampling: SamplingConfig, *, pad_token_id, stop_ids):  # noqa: ANN001
        from lit_align.roles.tokenizer import load_tokenizer

        ids = load_tokenizer("lit-align/tiny-sft")(FIXED_TEXT, add_special_tokens=False)["input_ids"] + [stop_ids[0]]
        return torch.tensor([ids] * len(input_ids))


class FakeLLM:
    """Records the constructor's arguments, requests and loaded weights; answers request i with i tokens and a stop."""

    last: FakeLLM | None = None

    def __init__(self, **kwargs) -> None:  # noqa: ANN003
        self.kwargs, self.requests, self.loaded, self.resets = kwargs, [], {}, 0
        runner = SimpleNamespace(
            model=SimpleNamespace(load_weights=lambda pairs: self.loaded.update((n, t.clone()) for n, t in pairs))
        )
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner))
        )
        FakeLLM.last = self

    def reset_prefix_cache(self) -> None:
        self.resets += 1

    def generate(self, prompts, params, use_tqdm=True):  # noqa: ANN001
        self.requests.append((prompts, params))
        stop = params[0]["stop_token_ids"][0]  # vLLM's token ids end with the stop token that ended them
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=[7] * i + [stop])]) for i in range(len(prompts))]


fake_vllm = SimpleNamespace(LLM=FakeLLM, SamplingParams=lambda **kwargs: kwargs)
