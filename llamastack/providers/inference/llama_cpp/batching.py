"""Continuous batching: one llama.cpp context per model, multi-sequence ``llama_decode`` steps.

A worker thread owns the context (llama.cpp contexts are not thread-safe). Each running request has a
slot (a llama.cpp sequence id with its own KV stream); every step decodes the next token of every
running sequence plus a piece of a new prompt, so a long prompt does not stall the streams already
flowing. New sequences join between steps. A finished sequence's tokens stay in its slot's KV cache: a
later prompt sharing its prompt's prefix (an agent's system prompt and earlier turn) starts after it,
and a prompt sharing a running one's prefix copies it, wherever that is exact (see ``_TILED_ROWS``).
Requests with the very same prompt (``n`` > 1 choices, identical batch items) compute it once: the
others take its KV stream and sample their first token from its logits, so what each generates is
exactly what it would alone.

Each sequence has its own KV stream (``kv_unified=False``): a sequence's cells then sit exactly where
they would if it ran alone, so greedy outputs do not depend on what else is in the batch.

The context starts with one slot: reserving KV for ``max_parallel`` sequences of ``n_ctx`` tokens means
faulting in (llama.cpp clears it) hundreds of MB, about half a second of CPU, which a server should not
spend before it answers. ``grow`` makes the full context in another thread; between two steps the
worker moves each slot's KV stream into it (the same cells at the same positions, so outputs do not
change) and carries on with ``max_parallel`` slots. Requests beyond the slots there are wait until then.
That thread runs only on CPU time nothing else wants (SCHED_IDLE): a third busy thread on 2 cores made
each all-cores decode step 3-5x slower for its 2 s, and the first chats after start took 275-350 ms
instead of 155. While requests wait for its slots, steps decode on the fewest threads, leaving it a core.

Everything reaching the native library is checked here first: token ids (vocabulary), positions
(per-sequence context), sequence ids (slots), batch size (allocated), logits indices (outputs).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llamastack.stack.apis.inference.core import (
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
    TokenLogprob,
    Usage,
)
from llamastack.stack.library_imports import library_imports

from ...utils.local_generation import hold_back
from .threads import ThreadTuner

log = logging.getLogger(__name__)

_PENALTY_LAST_N = 64  # tokens the repetition penalties look back over (llama-cpp-python's default)
_MIN_COPY = 16  # shared prefix (tokens) worth copying another slot's KV stream for: a copy costs about
# as much as computing 4 prompt tokens (a whole KV stream moves, 13-15 ms on 2 cores)
_TOGETHER_S = 0.05  # requests submitted this close together count as one burst
# llama.cpp picks its kernels by how many rows of one sequence a step holds: one (a decode), 2-63, or
# 64 and more, where its CPU flash attention takes a tiled kernel that rounds differently (and one
# row takes other matrix kernels). Within a kind, each row comes out the same however the rows are
# grouped. So a prompt computed in pieces of its own kind has the very KV (and logits) it has computed
# in one piece, and a prompt may start from another's KV when both are of one kind
# (tests/unit/test_exact_prefixes.py checks this against the installed llama.cpp).
_TILED_ROWS = 64
_CORES = os.cpu_count() or 1
_GROW_NICE = 10  # the nice value of the thread that makes the full KV cache where SCHED_IDLE is refused
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])  # llama_token_data


@dataclass(frozen=True, slots=True)
class Limits:
    max_parallel: int
    n_ctx: int  # per sequence
    n_batch: int  # tokens per llama_decode
    prefill_chunk: int  # prompt tokens per step while other sequences are decoding
    prefix_reuse: bool = False


@dataclass(eq=False)
class Sequence:
    """One generation: its prompt, sampling, output state and how it reports back."""

    tokens: list[int]
    budget: int
    sampling: SamplingOptions
    stops: list[str]
    grammar: str | None
    emit: Callable[[GenerationChunk], None] | None
    done: Callable[[GenerationResult | BaseException], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    # scheduler state (worker thread only)
    slot: int = -1
    fed: int = 0  # prompt tokens whose KV is in the slot
    chain: Any = None
    last: int = -1  # the token sampled last, fed in the next step
    n_out: int = 0
    reused: int = 0  # prompt tokens taken from a cached prefix
    lender: Sequence | None = None  # a running sequence whose prompt prefix this one will copy
    share: int = 0  # tokens of prefix shared with the lender
    twin_of: Sequence | None = None  # a running sequence with the same prompt, computed once for both
    exact: bool = True  # its prompt's KV is what computing it in one piece gives (see _TILED_ROWS)
    lend_exact: bool = True  # whether the lender's prefix keeps it exact
    text: str = ""
    out: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    pending_lp: list[TokenLogprob] = field(default_factory=list)
    decoder: Any = None
    submitted: float = field(default_factory=time.monotonic)
    first_token_s: float | None = None

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.tokens)


Entry = tuple[Sequence, int, int, bool]  # a batch row: sequence, token, position, wants logits


@dataclass
class _Slot:
    cached: list[int] = field(default_factory=list)  # tokens whose KV is in this sequence's stream
    seq: Sequence | None = None
    used_at: float = 0.0
    # The logits that followed the prompt ``cached[:prompt_len]`` (raw, before any bias): a request with
    # that very prompt starts from this KV and these logits without computing anything, exactly.
    prompt_logits: np.ndarray | None = None
    prompt_len: int = 0
    # ``cached[:exact_len]`` was computed as (part of) a prompt of kind ``exact_kind`` in pieces of
    # that kind: what a prompt of that kind computes there in one piece.
    exact_len: int = 0
    exact_kind: int = -1

    def serves(self, tokens: list[int]) -> bool:
        n = len(tokens)
        return self.prompt_logits is not None and self.prompt_len == n and self.cached[:n] == tokens

    def truncate(self, n: int) -> None:
        del self.cached[n:]
        self.exact_len = min(self.exact_len, n)

    def replace(self, tokens: list[int], exact_len: int, exact_kind: int) -> None:
        """Another stream's KV copied in: these tokens, exact as far as the source's were."""
        self.cached = tokens
        self.exact_len, self.exact_kind = exact_len, exact_kind
        self.forget_prompt()

    def forget_prompt(self) -> None:
        self.prompt_logits, self.prompt_len = None, 0


# A sequence's saved state (llama_state_seq_get_data) is an 8-byte header, the context's number of KV
# streams, then one section per stream: a cell count and the cells. It loads only into a context with
# as many streams, into the stream of the sequence it is loaded as; the cells themselves do not depend
# on the layout. So a sequence moves from the one-slot context into the full one as the same section
# followed by empty ones (what it is checked against after loading: every cell, at its position).
_STATE_HEADER = 8


def _restreamed(blob: bytes, n_stream: int, to_streams: int) -> bytes | None:
    """The saved state of one sequence of an ``n_stream`` context as that of a ``to_streams`` one, or
    None if it is not laid out as expected (then it is not moved)."""
    start = _STATE_HEADER
    if n_stream != 1 or len(blob) < start + 8 or int.from_bytes(blob[start : start + 4], "little") != 1:
        return None
    return blob[:start] + to_streams.to_bytes(4, "little") + blob[start + 4 :] + bytes(4 * (to_streams - 1))


def _kind(rows: int) -> int:
    """Which of llama.cpp's kernels computes a piece of this many rows of one sequence."""
    return 0 if rows <= 1 else 1 if rows < _TILED_ROWS else 2


def _least_piece(kind: int) -> int:
    """The fewest rows a piece of this kind has."""
    return (1, 2, _TILED_ROWS)[kind]


def _exact_share(region: int, region_kind: int, common: int, n: int) -> int:
    """How much of another prompt's KV (its first ``region`` tokens, computed as a prompt of
    ``region_kind``) a prompt of ``n`` tokens sharing ``common`` of them can start from, exactly: the
    kinds must agree, and what is left to compute must still be a piece of that kind."""
    kind = _kind(n)
    if region_kind != kind or kind == 0:
        return 0
    return max(0, min(region, common, n - _least_piece(kind)))


def _prefill_take(seq: Sequence, room: int) -> int:
    """How many of ``seq``'s prompt tokens to compute in a step with ``room`` for them: all that are
    left if they fit, else a piece that leaves a piece of the prompt's kind (0: none fits)."""
    left = len(seq.tokens) - seq.fed
    if room >= left or not seq.exact:
        return min(room, left)
    least = _least_piece(_kind(len(seq.tokens)))
    take = min(room, left - least)
    return take if take >= least else 0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class BatchScheduler:
    """The decode loop of one model. ``submit`` may be called from any thread."""

    def __init__(
        self,
        llm: Any,
        limits: Limits,
        n_threads: int | None,
        *,
        is_eog: Callable[[int], bool],
        eom_id: int | None,
        python_tag_id: int | None,
        name: str,
    ) -> None:
        with library_imports:
            import llama_cpp

        self._lc = llama_cpp
        self.llm = llm
        self.limits = limits
        self.n_vocab = llm.n_vocab()
        self._vocab = llm._model.vocab
        self._is_eog = is_eog
        self._eom_id = eom_id
        self._python_tag_id = python_tag_id
        self.tuner = ThreadTuner(n_threads)
        self._threads = self.tuner.best
        self._ctx = self._new_context(1)
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(self._ctx))
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(limits.n_batch, 0, 1)
        self._slots = [_Slot()]
        self._grower: threading.Thread | None = None
        self._grown: Any = None  # the full context, made by the grower, adopted by the worker
        self._adopt_when_idle = False
        self._incoming: deque[Sequence] = deque()
        self._active: list[Sequence] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._cold = True  # the first step on a context allocates its buffers: not a fair timing
        self.steps = 0
        self.prompt_tokens_computed = 0
        self._thread = threading.Thread(target=self._run, name=f"llama-cpp-{name}", daemon=True)
        self._thread.start()

    def _new_context(self, sequences: int) -> Any:
        lc, limits = self._lc, self.limits
        params = lc.llama_context_default_params()
        params.n_ctx = limits.n_ctx * sequences
        params.n_batch = limits.n_batch
        params.n_ubatch = limits.n_batch  # one micro-batch per decode: a failed decode leaves no KV behind
        params.n_seq_max = sequences
        params.kv_unified = False
        params.n_threads = self._threads
        params.n_threads_batch = self._threads
        ctx = lc.llama_init_from_model(self.llm._model.model, params)
        if not ctx:
            raise RuntimeError(
                f"llama.cpp could not create a context for {sequences} sequences of "
                f"{limits.n_ctx} tokens; lower max_parallel or n_ctx."
            )
        n_ctx_seq = int(lc.llama_n_ctx_seq(ctx))
        if n_ctx_seq < limits.n_ctx:
            lc.llama_free(ctx)
            raise RuntimeError(f"llama.cpp gave {n_ctx_seq} tokens per sequence, not {limits.n_ctx}.")
        return ctx

    # --- any thread -------------------------------------------------------------------------------

    def grow(self) -> None:
        """Starts making the context of ``max_parallel`` slots; the worker adopts it when it is made."""
        with self._wake:
            if self._grower is not None or len(self._slots) >= self.limits.max_parallel or self._stopping:
                return
            self._grower = threading.Thread(target=self._grow, name=f"{self._thread.name}-grow", daemon=True)
            self._grower.start()

    def _grow(self) -> None:
        # Faulting in the KV cache is half a second of CPU that nothing waits for (see the module's
        # notes): it runs when the cores are otherwise idle.
        # On one core it would starve for as long as requests follow one another: a nice value there.
        tid = threading.get_native_id()
        try:
            if _CORES < 2:
                raise OSError("one core")
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError):  # not Linux, or one core
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, tid, _GROW_NICE)
        started = time.perf_counter()
        try:
            ctx = self._new_context(self.limits.max_parallel)
            if self._lc.llama_n_ctx_seq(ctx) != self.n_ctx_seq:  # slots must move over cell for cell
                self._lc.llama_free(ctx)
                raise RuntimeError("llama.cpp sized the sequences of the full context differently")
        except RuntimeError as exc:
            log.error("Serving one request at a time: %s", exc)
            return
        with self._wake:
            if self._stopping:
                self._lc.llama_free(ctx)
                return
            self._grown = ctx
            self._wake.notify()
        log.debug(
            "KV cache for %d sequences in %.2f s", self.limits.max_parallel, time.perf_counter() - started
        )

    def submit(self, seq: Sequence) -> None:
        with self._wake:
            if self._stopping:
                raise RuntimeError("The model is being unloaded.")
            self._incoming.append(seq)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()
        if self._grower is not None:
            self._grower.join()
        lc = self._lc
        lc.llama_batch_free(self._batch)
        lc.llama_free(self._ctx)
        if self._grown is not None:
            lc.llama_free(self._grown)
            self._grown = None

    # --- the worker thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._incoming and not self._active and self._grown is None:
                    self._wake.wait()
                if self._stopping:
                    break
                grown = None
                if self._grown is not None and (not self._active or not self._adopt_when_idle):
                    grown, self._grown = self._grown, None
            if grown is not None and not self._adopt(grown):  # outside the lock: submit() never waits
                with self._wake:
                    self._grown, self._adopt_when_idle = grown, True
            with self._wake:
                while self._incoming and len(self._active) < len(self._slots):
                    self._admit(self._incoming.popleft())
            try:
                self._step()
            except Exception as exc:  # a bug must not leave clients hanging: fail what was running
                log.exception("llama.cpp decode loop failed")
                for seq in list(self._active):
                    self._drop(seq, exc)
        for seq in [*self._active, *self._incoming]:
            self._drop(seq, RuntimeError("The model was unloaded."))

    def _adopt(self, new: Any) -> bool:
        """Moves every slot's KV stream into the full context (worker thread, between steps); False if a
        running sequence's could not be moved (then it is tried again when no request runs)."""
        lc, old = self._lc, self._ctx
        new_mem = lc.llama_get_memory(new)
        for i, state in enumerate(self._slots):
            lc.llama_memory_seq_rm(new_mem, i, -1, -1)
            if not state.cached:
                continue
            size = lc.llama_state_seq_get_size(old, i)
            data = (ctypes.c_uint8 * size)()
            written = lc.llama_state_seq_get_data(old, data, size, i)
            blob = _restreamed(bytes(data)[:written], len(self._slots), self.limits.max_parallel)
            if blob is not None:
                src = (ctypes.c_uint8 * len(blob)).from_buffer_copy(blob)
                read = lc.llama_state_seq_set_data(new, src, len(blob), i)
                if read == len(blob) and lc.llama_memory_seq_pos_max(new_mem, i) == len(state.cached) - 1:
                    continue
            lc.llama_memory_seq_rm(new_mem, i, -1, -1)
            if state.seq is not None:
                log.warning("Could not move slot %d into the full KV cache; trying again when idle", i)
                return False
            state.truncate(0)  # only the cached prefix of a finished request is lost
            state.forget_prompt()
        lc.llama_set_n_threads(new, self._threads, self._threads)
        self._ctx, self._mem = new, new_mem
        self._cold = True
        self._slots += [_Slot() for _ in range(self.limits.max_parallel - len(self._slots))]
        lc.llama_free(old)
        return True

    def _admit(self, seq: Sequence) -> None:
        lc = self._lc
        try:
            if not seq.tokens or len(seq.tokens) + seq.budget > self.n_ctx_seq:
                raise ValueError("prompt and budget exceed the context")
            if any(not 0 <= t < self.n_vocab for t in seq.tokens):
                raise ValueError("prompt token outside the vocabulary")
            seq.chain = self._make_chain(seq)
        except Exception as exc:
            seq.done(exc)
            return
        seq.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        seq.logprobs = [] if seq.sampling.logprobs is not None else None
        free = [i for i, s in enumerate(self._slots) if s.seq is None]
        # The same prompt as a finished request whose slot still holds it (a retry, a repeated
        # question): nothing to compute.
        n = len(seq.tokens)
        loose = self.limits.prefix_reuse  # also reuse KV that is not exactly this prompt's own
        for i in free:
            state = self._slots[i]
            if (
                state.serves(seq.tokens)
                and (loose or state.exact_len >= n)
                and lc.llama_memory_seq_rm(self._mem, i, n, -1)
            ):
                state.truncate(n)
                state.seq = seq
                seq.slot, seq.fed, seq.reused = i, n, n
                self._active.append(seq)
                self._sample(seq, -1, state.prompt_logits)
                return
        # The free slot holding the longest prefix of this prompt it can start from; else the one
        # unused longest.
        reuse = {
            i: self._usable(self._slots[i].cached, self._slots[i].exact_len, self._slots[i].exact_kind, seq)
            for i in free
        }
        slot = max(free, key=lambda i: (reuse[i][0], -self._slots[i].used_at))
        keep, seq.exact = reuse[slot]
        if not lc.llama_memory_seq_rm(self._mem, slot, keep, -1):
            lc.llama_memory_seq_rm(self._mem, slot, -1, -1)
            keep, seq.exact = 0, True
        state = self._slots[slot]
        state.truncate(keep)
        state.forget_prompt()  # this sequence's own prompt replaces it at its first token
        state.seq = seq
        seq.slot, seq.fed, seq.reused = slot, keep, keep
        # A running sequence with the same prompt computes it for both, or has: this one takes its KV
        # and samples its first token from the same logits (exact: the very ones it would compute).
        if keep < len(seq.tokens) - 1:
            for other in self._active:
                if other.twin_of is not None or other.tokens != seq.tokens:
                    continue
                if other.prefilling:
                    seq.twin_of = other
                    self._active.append(seq)
                    return
                saved = self._slots[other.slot].prompt_logits
                if saved is not None and self._slots[other.slot].serves(seq.tokens):
                    self._active.append(seq)
                    self._take_twin(seq, other, -1, saved)
                    return
        # A running sequence whose prompt starts the same way (agents sharing a system prompt) can
        # lend its KV: this one waits for that prefix to be computed, then copies it.
        for other in self._active:
            exact_len = len(other.tokens) if other.exact else 0
            shared, exact = self._usable(other.tokens, exact_len, _kind(len(other.tokens)), seq)
            if shared - keep >= _MIN_COPY and shared > seq.share:
                seq.lender, seq.share, seq.lend_exact = other, shared, exact
        self._active.append(seq)

    def _usable(self, tokens: list[int], exact_len: int, exact_kind: int, seq: Sequence) -> tuple[int, bool]:
        """How many leading tokens of ``seq``'s prompt can start from KV holding
        ``tokens`` (exact for its first ``exact_len``, of ``exact_kind``), and whether that keeps it
        exact. With prefix reuse, also a longer inexact start (the last token is always computed)."""
        n = len(seq.tokens)
        common = _common_prefix(tokens, seq.tokens)
        exact = _exact_share(exact_len, exact_kind, common, n)
        loose = min(common, n - 1) if self.limits.prefix_reuse else 0
        return (loose, False) if loose > exact else (exact, True)

    def _borrow(self, seq: Sequence) -> bool:
        """Takes the lender's prefix once it is computed; False while the sequence must still wait."""
        lender = seq.lender
        assert lender is not None
        if lender in self._active and lender.slot >= 0:
            have = min(_common_prefix(self._slots[lender.slot].cached, seq.tokens), seq.share)
            if have < seq.share and lender.prefilling:
                return False
            if have - seq.fed >= _MIN_COPY:
                lc, slot = self._lc, seq.slot
                lc.llama_memory_seq_rm(self._mem, slot, -1, -1)
                # Across KV streams llama.cpp copies whole sequences only; the tail is cut afterwards.
                lc.llama_memory_seq_cp(self._mem, lender.slot, slot, -1, -1)
                if lc.llama_memory_seq_rm(self._mem, slot, have, -1):
                    tokens = self._slots[lender.slot].cached[:have]
                    self._slots[slot].replace(
                        tokens, have if seq.lend_exact else 0, _kind(len(lender.tokens))
                    )
                    seq.fed = seq.reused = have
                    seq.exact = seq.lend_exact
                else:  # cannot happen for a full copy; start from scratch rather than trust the cache
                    lc.llama_memory_seq_rm(self._mem, slot, -1, -1)
                    self._slots[slot].replace([], 0, -1)
                    seq.fed = seq.reused = 0
                    seq.exact = True
        seq.lender = None
        return True

    def _make_chain(self, seq: Sequence) -> Any:
        lc = self._lc
        s = seq.sampling
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())

        def add(sampler: Any) -> None:
            if not sampler:
                raise ValueError("llama.cpp could not create a sampler")
            lc.llama_sampler_chain_add(chain, sampler)

        try:
            if s.logit_bias:
                items = [(t, b) for t, b in s.logit_bias.items() if 0 <= t < self.n_vocab]
                arr = (lc.llama_logit_bias * len(items))()
                for k, (t, b) in enumerate(items):
                    arr[k].token, arr[k].bias = t, float(b)
                add(lc.llama_sampler_init_logit_bias(self.n_vocab, len(items), arr))
            repeat, freq, present = (
                s.repetition_penalty or 1.0,
                s.frequency_penalty or 0.0,
                s.presence_penalty or 0.0,
            )
            if (repeat, freq, present) != (1.0, 0.0, 0.0):
                add(lc.llama_sampler_init_penalties(self.n_vocab, _PENALTY_LAST_N, repeat, freq, present))
            if seq.grammar is not None:
                add(lc.llama_sampler_init_grammar(self._vocab, seq.grammar.encode(), b"root"))
            if not s.temperature:
                add(lc.llama_sampler_init_greedy())
            else:
                seed = s.seed & 0x7FFFFFFF if s.seed is not None else random.getrandbits(31)
                if s.top_k:
                    add(lc.llama_sampler_init_top_k(int(s.top_k)))
                if s.top_p is not None and s.top_p < 1.0:
                    add(lc.llama_sampler_init_top_p(float(s.top_p), 1))
                add(lc.llama_sampler_init_temp(float(s.temperature)))
                add(lc.llama_sampler_init_dist(seed))
        except BaseException:
            lc.llama_sampler_free(chain)
            raise
        return chain

    def _release(self, seq: Sequence) -> None:
        if seq in self._active:
            self._active.remove(seq)
        if seq.chain is not None:
            self._lc.llama_sampler_free(seq.chain)
            seq.chain = None
        if seq.slot >= 0:
            state = self._slots[seq.slot]
            state.seq = None
            state.used_at = time.monotonic()

    def _drop(self, seq: Sequence, exc: BaseException) -> None:
        if seq.slot >= 0:  # what was decoding may be half-written: forget the slot's cache
            self._lc.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
            self._slots[seq.slot].truncate(0)
            self._slots[seq.slot].forget_prompt()
        self._release(seq)
        seq.done(exc)

    def _step(self) -> None:
        for seq in [s for s in self._active if s.cancel.is_set()]:
            log.info("Generation cancelled after %d tokens: the client went away.", seq.n_out)
            self._finish(seq, "stop", False)
        if not self._active:
            return
        limits = self.limits
        # Rows by how many of its sequence's the step holds: each group is one llama_decode. llama.cpp
        # cuts a batch over several KV streams into micro-batches of as many rows of each sequence
        # (one row of each, while some decode): a prompt piece among decode rows would be cut there,
        # and its rows would not come out as they do alone (see _TILED_ROWS). Pieces of one length
        # stay whole together.
        groups: dict[int, list[Entry]] = {}
        decoding = [s for s in self._active if not s.prefilling]
        for seq in decoding:
            groups.setdefault(1, []).append((seq, seq.last, len(self._slots[seq.slot].cached), True))
        room = limits.n_batch - len(decoding)
        if decoding:
            room = min(room, limits.prefill_chunk)
        first: Sequence | None = None
        for seq in list(self._active):
            if room <= 0:
                break
            if seq.twin_of is not None and seq.twin_of not in self._active:
                seq.twin_of = None  # its twin went away before computing the prompt: compute it here
            if not seq.prefilling or seq.twin_of is not None:
                continue
            if seq.lender is not None and not self._borrow(seq):
                continue
            if decoding and first is not None and seq.submitted - first.submitted > _TOGETHER_S:
                # Joining a running batch: requests that arrived one after another start streaming
                # one after another (a step apart); a burst that arrived together joins together.
                break
            take = _prefill_take(seq, room)
            if not take:
                continue  # no piece of its kind fits in this step: the next one
            first = first or seq
            piece = groups.setdefault(take, [])
            for k in range(seq.fed, seq.fed + take):
                piece.append((seq, seq.tokens[k], k, k == len(seq.tokens) - 1))
            room -= take
        for rows in sorted(groups):
            # In sequence order: a step whose sequences come out of order costs llama.cpp much more
            # (8 sequences: 105-148 tok/s against 199-218 sorted, requests arriving in random order).
            self._decode(sorted(groups[rows], key=lambda e: (e[0].slot, e[2])))

    def _decode(self, entries: list[Entry]) -> None:
        """One llama_decode of these rows, then the tokens sampled where a row wants its logits."""
        lc, batch = self._lc, self._batch
        assert 0 < len(entries) <= self.limits.n_batch
        for i, (seq, token, pos, logits) in enumerate(entries):
            if not 0 <= token < self.n_vocab or not 0 <= pos < self.n_ctx_seq:
                raise RuntimeError(f"invalid batch entry: token {token} at position {pos}")
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq.slot
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        if self._incoming and self._grown is None and self._grower is not None and self._grower.is_alive():
            # Requests wait for the slots being made: leave that thread a core (even below a fixed count).
            threads = min(self.tuner.counts[-1], max(1, _CORES - 1))
        else:
            threads = self.tuner.choose(len(entries))
        if threads != self._threads:
            lc.llama_set_n_threads(self._ctx, threads, threads)
            self._threads = threads
        started = time.perf_counter()
        rc = lc.llama_decode(self._ctx, batch)
        if not self._cold:
            self.tuner.record(threads, len(entries), time.perf_counter() - started)
        self._cold = False
        self.steps += 1
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        for seq, token, _pos, _logits in entries:
            self._slots[seq.slot].cached.append(token)
            if seq.prefilling:
                seq.fed += 1
                self.prompt_tokens_computed += 1
        for i, (seq, _token, _pos, logits) in enumerate(entries):
            if not logits or seq not in self._active:
                continue
            twins = [t for t in self._active if t.twin_of is seq] if seq.n_out == 0 else []
            if seq.chain is not None:
                self._sample(seq, i)
            for twin in twins:
                self._take_twin(twin, seq, i)

    def _take_twin(
        self, seq: Sequence, source: Sequence, index: int, saved: np.ndarray | None = None
    ) -> None:
        """Gives ``seq`` the prompt ``source`` has computed (the logits at batch entry ``index`` of this
        step, or ``saved`` from an earlier one): its KV, then its first token, sampled with its own
        sampler from the same logits."""
        lc, slot, n = self._lc, seq.slot, len(seq.tokens)
        seq.twin_of = None
        lc.llama_memory_seq_rm(self._mem, slot, -1, -1)
        # Across KV streams llama.cpp copies whole sequences (applied before the next decode); what the
        # source generated after its prompt is cut here.
        lc.llama_memory_seq_cp(self._mem, source.slot, slot, -1, -1)
        if not lc.llama_memory_seq_rm(self._mem, slot, n, -1):
            lc.llama_memory_seq_rm(self._mem, slot, -1, -1)  # cannot happen; compute the prompt instead
            self._slots[slot].replace([], 0, -1)
            seq.fed = seq.reused = 0
            seq.exact = True
            return
        self._slots[slot].replace(list(seq.tokens), n if source.exact else 0, _kind(n))
        seq.fed = seq.reused = n
        seq.exact = source.exact
        if seq.chain is not None:
            self._sample(seq, index, saved)

    def _logits(self, index: int) -> np.ndarray:
        ptr = self._lc.llama_get_logits_ith(self._ctx, index)
        if not ptr:
            raise RuntimeError(f"no logits for batch index {index}")
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32, copy=True)

    def _sample_saved(self, chain: Any, logits: np.ndarray) -> int:
        """What llama_sampler_sample does with a context's logits, on logits kept from an earlier step."""
        lc = self._lc
        cur = np.empty(self.n_vocab, dtype=_TOKEN_DATA)
        cur["id"] = np.arange(self.n_vocab, dtype=np.int32)
        cur["logit"] = logits
        cur["p"] = 0.0
        arr = lc.llama_token_data_array(
            cur.ctypes.data_as(ctypes.POINTER(lc.llama_token_data)), self.n_vocab, -1, False
        )
        lc.llama_sampler_apply(chain, ctypes.byref(arr))
        if not 0 <= arr.selected < arr.size:
            raise RuntimeError("the sampler selected no token")
        token = int(arr.data[arr.selected].id)
        lc.llama_sampler_accept(chain, token)
        return token

    def _sample(self, seq: Sequence, index: int, saved: np.ndarray | None = None) -> None:
        lc = self._lc
        lp: TokenLogprob | None = None
        if saved is not None:
            logits = saved
            token = self._sample_saved(seq.chain, saved)
        else:
            if seq.logprobs is not None or seq.first_token_s is None:
                logits = self._logits(index)
            token = int(lc.llama_sampler_sample(seq.chain, self._ctx, index))
        if seq.first_token_s is None:
            seq.first_token_s = time.monotonic() - seq.submitted
            state = self._slots[seq.slot]
            state.prompt_logits, state.prompt_len = logits, len(seq.tokens)
            if seq.exact:  # its whole prompt is now KV a prompt of its kind can start from
                state.exact_len, state.exact_kind = len(seq.tokens), _kind(len(seq.tokens))
        if not 0 <= token < self.n_vocab:
            raise RuntimeError(f"the sampler returned token {token}")
        if self._is_eog(token):
            self._finish(seq, "stop", token == self._eom_id)
            return
        seq.n_out += 1
        if seq.logprobs is not None:
            logits = logits.copy()  # the slot keeps the raw ones
            for t, b in (seq.sampling.logit_bias or {}).items():
                if 0 <= t < self.n_vocab:
                    logits[t] += b
            lp = _logprob(logits, token, seq.sampling.logprobs or 0, self._piece)
            seq.pending_lp.append(lp)
        piece = self.llm.detokenize([token], special=token == self._python_tag_id)
        seq.text += seq.decoder.decode(piece)
        stops = seq.stops
        if stops:
            hit = min((i for i in (seq.text.find(s) for s in stops) if i >= 0), default=-1)
            if hit >= 0:
                seq.text = seq.text[:hit]
                self._finish(seq, "stop", False)
                return
            ready = len(seq.text) - hold_back(seq.text, stops)
        else:
            ready = len(seq.text)
        if ready > 0:
            chunk, seq.text = seq.text[:ready], seq.text[ready:]
            self._emit(seq, chunk)
        if seq.n_out >= seq.budget:
            self._finish(seq, "length", False)
            return
        seq.last = token

    def _emit(self, seq: Sequence, chunk: str) -> None:
        seq.out.append(chunk)
        if seq.logprobs is not None:
            seq.logprobs.extend(seq.pending_lp)
        if seq.emit is not None:
            seq.emit(GenerationChunk(text=chunk, logprobs=seq.pending_lp or None))
        seq.pending_lp = []

    def _finish(self, seq: Sequence, finish: str, end_of_message: bool) -> None:
        seq.text += seq.decoder.decode(b"", final=True)
        if seq.text or seq.pending_lp:
            self._emit(seq, seq.text)
        self._release(seq)
        log.debug(
            "slot %d: %d prompt tokens (%d from cache), %d generated, first token after %.3f s",
            seq.slot,
            len(seq.tokens),
            seq.reused,
            seq.n_out,
            seq.first_token_s or 0.0,
        )
        seq.done(
            GenerationResult(
                text="".join(seq.out),
                finish_reason=finish,  # type: ignore[arg-type]
                usage=Usage(prompt_tokens=len(seq.tokens), completion_tokens=seq.n_out),
                end_of_message=end_of_message,
                logprobs=seq.logprobs,
            )
        )

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")


def _logprob(logits: np.ndarray, token: int, top_n: int, piece: Callable[[int], str]) -> TokenLogprob:
    shifted = logits - logits.max()
    lp = shifted - float(np.log(np.exp(shifted).sum()))
    top: list[tuple[str, float]] = []
    if top_n > 0:
        idx = np.argpartition(-lp, top_n)[:top_n]
        idx = idx[np.argsort(-lp[idx])]
        top = [(piece(int(i)), float(lp[i])) for i in idx]
    return TokenLogprob(token=piece(token), logprob=float(lp[token]), top=top)


__all__ = ["BatchScheduler", "Limits", "Sequence"]
