"""Prompts start from KV another prompt computed, by default and exactly: what each request generates
is what it generates alone. llama.cpp computes a sequence's rows with kernels chosen by how many there
are in a step (1, 2-63, 64+); within a kind, rows come out the same however they are grouped, which
the first tests check against the installed llama.cpp (the scheduler relies on it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from llama_engine import GGUF, generated, grown, loaded, scored

from llamastack.providers.inference.llama_cpp.config import LlamaCppConfig
from llamastack.providers.inference.llama_cpp.engine import LlamaCppModel

CONFIG = LlamaCppConfig(n_ctx=1024, max_parallel=4, n_threads=1)
SYSTEM = "You are a careful assistant who answers in full sentences. The question follows. Question:"
STORY = (
    "The old lighthouse stood at the edge of the cliff, and every night its keeper climbed the "
    "winding stairs to light the lamp. Ships passing in the dark relied on its beam to find the "
    "harbour, and the keeper kept a logbook of every vessel that went by, its name, its flag and "
    "the weather. One winter the storms came earlier than anyone remembered, and the keeper wrote"
)


# --- the property of llama.cpp the scheduler relies on ------------------------------------------------


class Pieces:
    """The scheduler's kind of context (one KV stream per sequence), driven directly."""

    def __init__(self, engine: LlamaCppModel) -> None:
        import llama_cpp as lc

        self.lc, self.llm = lc, engine.llm
        params = lc.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = 1024 * 2, 512, 512
        params.n_seq_max, params.kv_unified = 2, False
        params.n_threads = params.n_threads_batch = 2
        self.ctx = lc.llama_init_from_model(engine.llm._model.model, params)
        self.mem = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(512, 0, 1)
        self.n_vocab = engine.llm.n_vocab()

    def close(self) -> None:
        self.lc.llama_batch_free(self.batch)
        self.lc.llama_free(self.ctx)

    def decode(self, rows: list[tuple[int, int, int]]) -> np.ndarray:
        """(sequence, position, token) rows in one step; the last row's logits."""
        for i, (seq, pos, token) in enumerate(rows):
            self.batch.token[i], self.batch.pos[i] = token, pos
            self.batch.n_seq_id[i], self.batch.seq_id[i][0] = 1, seq
            self.batch.logits[i] = i == len(rows) - 1
        self.batch.n_tokens = len(rows)
        assert self.lc.llama_decode(self.ctx, self.batch) == 0
        ptr = self.lc.llama_get_logits_ith(self.ctx, len(rows) - 1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def prompt(self, tokens: list[int], cuts: tuple[int, ...] = ()) -> np.ndarray:
        """The logits after ``tokens``, computed on sequence 0 in pieces ending at ``cuts``."""
        self.lc.llama_memory_seq_rm(self.mem, 0, -1, -1)
        ends = [*cuts, len(tokens)]
        start = 0
        for end in ends:
            logits = self.decode([(0, p, tokens[p]) for p in range(start, end)])
            start = end
        return logits


@pytest.fixture(scope="module")
def pieces() -> Iterator[Pieces]:
    engine = LlamaCppModel(GGUF, CONFIG, grow=False)
    driven = Pieces(engine)
    yield driven
    driven.close()
    engine.close()


def _tokens(pieces: Pieces, n: int) -> list[int]:
    tokens: list[Any] = pieces.llm.tokenize((STORY * 3).encode())
    assert len(tokens) >= n
    return tokens[:n]


@pytest.mark.parametrize(("n", "cuts"), [(40, (2,)), (40, (20,)), (40, (10, 30)), (40, (38,))])
def test_a_short_prompt_in_pieces_of_two_rows_or_more_is_the_same(
    pieces: Pieces, n: int, cuts: tuple[int, ...]
) -> None:
    tokens = _tokens(pieces, n)
    assert np.array_equal(pieces.prompt(tokens, cuts), pieces.prompt(tokens))


@pytest.mark.parametrize("cuts", [(64,), (75,), (86,)])
def test_a_long_prompt_in_pieces_of_64_rows_or_more_is_the_same(
    pieces: Pieces, cuts: tuple[int, ...]
) -> None:
    tokens = _tokens(pieces, 150)
    assert np.array_equal(pieces.prompt(tokens, cuts), pieces.prompt(tokens))


def test_another_sequence_in_the_same_step_changes_nothing(pieces: Pieces) -> None:
    tokens = _tokens(pieces, 100)
    alone = pieces.prompt(tokens)
    lc = pieces.lc
    lc.llama_memory_seq_rm(pieces.mem, 0, -1, -1)
    lc.llama_memory_seq_rm(pieces.mem, 1, -1, -1)
    pieces.decode([(1, p, tokens[p]) for p in range(10)])
    together = pieces.decode([(1, 10, tokens[10])] + [(0, p, t) for p, t in enumerate(tokens)])
    assert np.array_equal(together, alone)


# --- the scheduler ----------------------------------------------------------------------------------


@pytest.fixture
def engine() -> Iterator[LlamaCppModel]:
    with loaded(CONFIG) as model:
        yield model


async def _alone(prompts: list[str], tokens: int) -> list[str]:
    """Each prompt's output on an engine of its own, one at a time (nothing cached, nothing shared)."""
    texts = []
    for prompt in prompts:
        fresh = LlamaCppModel(GGUF, CONFIG, grow=False)
        try:
            texts.append(await generated(fresh, prompt, tokens))
        finally:
            fresh.close()
    return texts


async def test_requests_sharing_a_prefix_compute_it_once_and_each_output_is_exact(
    engine: LlamaCppModel,
) -> None:
    await grown(engine)
    prompts = [f"{SYSTEM} {q}" for q in ("What is a comet?", "Why is the sea salty?", "Who was Ada?")]
    tokens = [engine.completion_prompt(p) for p in prompts]
    lengths = [len(t) for t in tokens]
    assert all(2 <= n < 64 for n in lengths)  # one kind: 2-63 rows
    shared = next(i for i, column in enumerate(zip(*tokens, strict=False)) if len(set(column)) > 1)
    assert shared >= 16
    alone = await _alone(prompts, 12)
    before = engine._scheduler.prompt_tokens_computed
    together = await asyncio.gather(*(generated(engine, p, 12) for p in prompts))
    assert together == alone
    computed = engine._scheduler.prompt_tokens_computed - before
    assert computed == lengths[0] + sum(n - shared for n in lengths[1:])  # the others: their ends


async def test_a_long_prompt_joining_running_streams_is_exact(engine: LlamaCppModel) -> None:
    """A prompt over prefill_chunk tokens is computed in pieces while another request streams; the
    pieces are of its own kind (64+ rows), so it generates what it does alone."""
    await grown(engine)
    long_prompt = f"{STORY} in the logbook that the sea had risen. {STORY.lower()}"
    assert len(engine.completion_prompt(long_prompt)) > CONFIG.prefill_chunk
    fresh = LlamaCppModel(GGUF, CONFIG, grow=False)
    try:
        alone = await scored(fresh, long_prompt, 16)
    finally:
        fresh.close()
    running = asyncio.ensure_future(generated(engine, "Once upon a time,", 60))
    await asyncio.sleep(0.3)  # it is streaming
    assert await scored(engine, long_prompt, 16) == alone  # the same text, from the same logits
    await running


async def test_a_follow_up_turn_starts_from_the_earlier_prompt(engine: LlamaCppModel) -> None:
    """A conversation's next turn resends the earlier prompt: it is not computed again (exactly)."""
    await grown(engine)
    first = STORY
    answer = await generated(engine, first, 10)
    follow_up = (
        f"{first}{answer} The next morning the keeper walked down to the harbour to ask the "
        "fishermen what they had seen during the night. They told him about a ship with black sails "
        "that had passed the point without lights, about a bell ringing far out at sea, and about a "
        "boy who swore he had seen the lamp go out for a moment just before midnight. The keeper"
    )
    n, n_first = len(engine.completion_prompt(follow_up)), len(engine.completion_prompt(first))
    before = engine._scheduler.prompt_tokens_computed
    text = await generated(engine, follow_up, 10)
    computed = engine._scheduler.prompt_tokens_computed - before
    assert computed <= n - n_first + 1  # the first turn's prompt came from the cache
    assert [text] == await _alone([follow_up], 10)
