"""Requests with the same prompt (n > 1 choices, identical batch items) compute it once in the llama.cpp
engine, and each still generates exactly what it would alone, greedy or sampled with its own seed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from llama_engine import GGUF, NO_EOS, grown, loaded

from llamastack.providers.inference.llama_cpp.config import LlamaCppConfig
from llamastack.providers.inference.llama_cpp.engine import LlamaCppModel
from llamastack.stack.apis.inference.core import SamplingOptions

CONFIG = LlamaCppConfig(n_ctx=512, max_parallel=4, n_threads=1)
PROMPT = "The lighthouse keeper opened the logbook and wrote down what the storm had brought:"


def _sampling(seed: int | None) -> SamplingOptions:
    if seed is None:
        return SamplingOptions(max_tokens=20, temperature=0, logit_bias=NO_EOS)
    return SamplingOptions(max_tokens=20, temperature=0.9, top_p=0.95, seed=seed, logit_bias=NO_EOS)


async def _text(engine: LlamaCppModel, seed: int | None) -> str:
    parts = []
    stream = engine.generate_stream(
        engine.completion_prompt(PROMPT), 20, _sampling(seed), [], None, model_id="smol"
    )
    async for chunk in stream:
        parts.append(chunk.text or "")
    return "".join(parts)


@pytest.fixture
def engine() -> Iterator[LlamaCppModel]:
    with loaded(CONFIG) as model:
        yield model


async def _alone(seeds: list[int | None]) -> list[str]:
    """Each seed's output computed one at a time on an engine of its own (so nothing is cached)."""
    texts = []
    for seed in seeds:
        fresh = LlamaCppModel(GGUF, CONFIG, grow=False)
        try:
            texts.append(await _text(fresh, seed))
        finally:
            fresh.close()
    return texts


async def test_the_same_prompt_is_computed_once_and_every_output_is_exact(engine: LlamaCppModel) -> None:
    await grown(engine)
    n_prompt = len(engine.completion_prompt(PROMPT))
    seeds = [None, 7, 11, 1234]
    alone = await _alone(seeds)
    assert len(set(alone[1:])) > 1  # the seeds do sample differently

    before = engine._scheduler.prompt_tokens_computed
    together = await asyncio.gather(*(_text(engine, s) for s in seeds))
    assert engine._scheduler.prompt_tokens_computed - before == n_prompt  # once, not four times
    assert list(together) == alone


async def test_a_twin_whose_source_is_cancelled_computes_the_prompt_itself(engine: LlamaCppModel) -> None:
    await grown(engine)
    (alone,) = await _alone([None])
    first = asyncio.ensure_future(_text(engine, None))
    second = asyncio.ensure_future(_text(engine, None))
    await asyncio.sleep(0)  # both submitted; cancel the first before its prompt is computed
    first.cancel()
    assert await second == alone
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_request_arriving_after_the_prompt_was_computed_still_shares_it(
    engine: LlamaCppModel,
) -> None:
    """The second of two streamed choices starts after the first has sent its first token (the way
    the OpenAI route starts n > 1 streams): it takes the prompt's KV and first logits all the same."""
    await grown(engine)
    alone = await _alone([None, 5])
    before = engine._scheduler.prompt_tokens_computed
    first_chunk = asyncio.Event()
    parts: list[str] = []

    async def first() -> str:
        stream = engine.generate_stream(
            engine.completion_prompt(PROMPT), 20, _sampling(None), [], None, model_id="smol"
        )
        async for chunk in stream:
            parts.append(chunk.text or "")
            first_chunk.set()
        return "".join(parts)

    task = asyncio.ensure_future(first())
    await first_chunk.wait()
    second = await _text(engine, 5)
    assert [await task, second] == alone
    assert engine._scheduler.prompt_tokens_computed - before == len(engine.completion_prompt(PROMPT))


async def test_a_repeated_prompt_starts_from_the_finished_request_and_gives_the_same_output(
    engine: LlamaCppModel,
) -> None:
    """A retry or a repeated question finds its prompt still in a free slot: nothing is computed again,
    and greedy or seeded output is what the first request got; another prompt in between changes
    nothing."""
    await grown(engine)
    first = [await _text(engine, s) for s in (None, 3)]
    other = engine.generate(
        engine.completion_prompt("A different prompt."), 8, _sampling(None), [], None, model_id="smol"
    )
    await other
    before = engine._scheduler.prompt_tokens_computed
    again = [await _text(engine, s) for s in (None, 3)]
    assert again == first
    assert engine._scheduler.prompt_tokens_computed == before
