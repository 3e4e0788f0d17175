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


async def test_the_growth_runs_on_idle_cpu_and_waiting_requests_leave_it_a_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Making the full KV cache is half a second of CPU: on 2 cores a third busy thread made every
    all-cores step 3-5x slower. It runs on CPU time nothing else wants, and while requests wait for its
    slots the steps decode on fewer threads (below a fixed count too), so it gets a core."""
    import os

    import llama_cpp

    policies: list[int] = []
    real_policy = os.sched_setscheduler

    def policy(tid: int, chosen: int, param: os.sched_param) -> None:
        policies.append(chosen)
        real_policy(tid, chosen, param)

    monkeypatch.setattr(os, "sched_setscheduler", policy)
    used: list[int] = []
    real_threads = llama_cpp.llama_set_n_threads

    def threads(ctx: object, n: int, n_batch: int) -> None:
        used.append(n)
        real_threads(ctx, n, n_batch)

    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", threads)
    cores = os.cpu_count() or 1
    with loaded(LlamaCppConfig(n_ctx=512, max_parallel=3, n_threads=2), grow=False) as engine:
        alone = await _text(engine, PROMPT, 24)
        requests = [asyncio.ensure_future(_text(engine, PROMPT, 24)) for _ in range(3)]
        await asyncio.sleep(0.05)
        engine._scheduler.grow()
        assert await asyncio.gather(*requests) == [alone] * 3
        await grown(engine)
    if cores >= 2:
        assert policies == [os.SCHED_IDLE]
        assert min(2, cores - 1) in used and 2 in used
