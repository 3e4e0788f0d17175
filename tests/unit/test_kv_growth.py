"""The llama.cpp engine starts with one slot and grows its KV cache to max_parallel slots in the
background: what a request generates does not depend on when that happens, even mid-stream, and
requests beyond the slots wait for it instead of failing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from llama_engine import NO_EOS, grown, loaded

from llamastack.providers.inference.llama_cpp.config import LlamaCppConfig
from llamastack.providers.inference.llama_cpp.engine import LlamaCppModel
from llamastack.stack.apis.inference.core import SamplingOptions

CONFIG = LlamaCppConfig(n_ctx=512, max_parallel=3, n_threads=1)
PROMPT = "Once upon a time, in a quiet village by the sea,"


def _greedy(tokens: int) -> SamplingOptions:
    return SamplingOptions(max_tokens=tokens, temperature=0, logit_bias=NO_EOS)


async def _text(engine: LlamaCppModel, prompt: str, tokens: int, on_chunk: object = None) -> str:
    parts = []
    stream = engine.generate_stream(
        engine.completion_prompt(prompt), tokens, _greedy(tokens), [], None, model_id="smol"
    )
    async for chunk in stream:
        parts.append(chunk.text or "")
        if callable(on_chunk):
            on_chunk(len(parts))
    return "".join(parts)


@pytest.fixture
def engine() -> Iterator[LlamaCppModel]:
    with loaded(CONFIG, grow=False) as model:
        yield model


async def test_outputs_are_the_same_before_during_and_after_the_growth(engine: LlamaCppModel) -> None:
    assert len(engine._scheduler._slots) == 1
    before = await _text(engine, PROMPT, 24)

    slots_seen: list[int] = []

    def grow_midway(chunks: int) -> None:
        slots_seen.append(len(engine._scheduler._slots))
        if chunks == 4:
            engine._scheduler.grow()

    across = await _text(engine, "The three rules of the old lighthouse were", 120, grow_midway)
    await grown(engine)
    assert slots_seen[0] == 1 and slots_seen[-1] == CONFIG.max_parallel  # moved while it streamed
    assert await _text(engine, PROMPT, 24) == before
    assert await _text(engine, "The three rules of the old lighthouse were", 120) == across
    together = await asyncio.gather(*(_text(engine, PROMPT, 24) for _ in range(CONFIG.max_parallel)))
    assert together == [before] * CONFIG.max_parallel


async def test_requests_beyond_the_first_slot_wait_for_it(engine: LlamaCppModel) -> None:
    # Never grown here: three requests share the one slot, one after another.
    texts = await asyncio.gather(*(_text(engine, PROMPT, 8) for _ in range(3)))
    assert len(set(texts)) == 1 and texts[0]
    assert len(engine._scheduler._slots) == 1
