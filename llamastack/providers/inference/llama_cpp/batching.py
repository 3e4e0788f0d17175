"""Continuous batching: one llama.cpp context per model, one multi-sequence ``llama_decode`` per step.

A worker thread owns the context (llama.cpp contexts are not thread-safe). Each running request has a
slot (a llama.cpp sequence id with its own KV stream); every step decodes the next token of every
running sequence plus a chunk of a new prompt, so a long prompt does not stall the streams already
flowing. New sequences join between steps. A finished sequence's tokens stay in its slot's KV cache: a
later prompt sharing that prefix (an agent's system prompt and earlier turns) starts after it.

Each sequence has its own KV stream (``kv_unified=False``): a sequence's cells then sit exactly where
they would if it ran alone, so greedy outputs do not depend on what else is in the batch.

Everything reaching the native library is checked here first: token ids (vocabulary), positions
(per-sequence context), sequence ids (slots), batch size (allocated), logits indices (outputs).
"""

from __future__ import annotations

import codecs
import logging
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

from ...utils.local_generation import hold_back
from .threads import ThreadTuner

log = logging.getLogger(__name__)

_PENALTY_LAST_N = 64  # tokens the repetition penalties look back over (llama-cpp-python's default)
_MIN_COPY = 96  # shared prefix (tokens) worth copying another slot's KV stream for
_TOGETHER_S = 0.05  # requests submitted this close together count as one burst


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


@dataclass
class _Slot:
    cached: list[int] = field(default_factory=list)  # tokens whose KV is in this sequence's stream
    seq: Sequence | None = None
    used_at: float = 0.0


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
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = limits.n_ctx * limits.max_parallel
        params.n_batch = limits.n_batch
        params.n_ubatch = limits.n_batch  # one micro-batch per decode: a failed decode leaves no KV behind
        params.n_seq_max = limits.max_parallel
        params.kv_unified = False
        params.n_threads = self._threads
        params.n_threads_batch = self._threads
        ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not ctx:
            raise RuntimeError(
                f"llama.cpp could not create a context for {limits.max_parallel} sequences of "
                f"{limits.n_ctx} tokens; lower max_parallel or n_ctx."
            )
        self._ctx = ctx
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(ctx))
        if self.n_ctx_seq < limits.n_ctx:
            llama_cpp.llama_free(ctx)
            raise RuntimeError(f"llama.cpp gave {self.n_ctx_seq} tokens per sequence, not {limits.n_ctx}.")
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(limits.n_batch, 0, 1)
        self._slots = [_Slot() for _ in range(limits.max_parallel)]
        self._incoming: deque[Sequence] = deque()
        self._active: list[Sequence] = []
        self._wake = threading.Condition()
        self._stopping = False
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name=f"llama-cpp-{name}", daemon=True)
        self._thread.start()

    # --- any thread -------------------------------------------------------------------------------

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
        lc = self._lc
        lc.llama_batch_free(self._batch)
        lc.llama_free(self._ctx)

    # --- the worker thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._incoming and not self._active:
                    self._wake.wait()
                if self._stopping:
                    break
                while self._incoming and len(self._active) < self.limits.max_parallel:
                    self._admit(self._incoming.popleft())
            try:
                self._step()
            except Exception as exc:  # a bug must not leave clients hanging: fail what was running
                log.exception("llama.cpp decode loop failed")
                for seq in list(self._active):
                    self._drop(seq, exc)
        for seq in [*self._active, *self._incoming]:
            self._drop(seq, RuntimeError("The model was unloaded."))

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
        # The free slot holding the longest prefix of this prompt; else the one unused longest.
        cap = len(seq.tokens) - 1 if self.limits.prefix_reuse else 0  # the last token must be evaluated
        reuse = {i: min(_common_prefix(self._slots[i].cached, seq.tokens), cap) for i in free}
        slot = max(free, key=lambda i: (reuse[i], -self._slots[i].used_at))
        keep = reuse[slot]
        if not lc.llama_memory_seq_rm(self._mem, slot, keep, -1):
            lc.llama_memory_seq_rm(self._mem, slot, -1, -1)
            keep = 0
        state = self._slots[slot]
        del state.cached[keep:]
        state.seq = seq
        seq.slot, seq.fed, seq.reused = slot, keep, keep
        # A running sequence whose prompt starts the same way (n > 1 choices, agents sharing a system
        # prompt) can lend its KV: this one waits for that prefix to be computed, then copies it.
        for other in self._active:
            shared = min(_common_prefix(other.tokens, seq.tokens), cap)
            if shared - keep >= _MIN_COPY and shared > seq.share:
                seq.lender, seq.share = other, shared
        self._active.append(seq)

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
                    self._slots[slot].cached = self._slots[lender.slot].cached[:have]
                    seq.fed = seq.reused = have
                else:  # cannot happen for a full copy; start from scratch rather than trust the cache
                    lc.llama_memory_seq_rm(self._mem, slot, -1, -1)
                    self._slots[slot].cached = []
                    seq.fed = seq.reused = 0
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
            self._slots[seq.slot].cached.clear()
        self._release(seq)
        seq.done(exc)

    def _step(self) -> None:
        lc = self._lc
        for seq in [s for s in self._active if s.cancel.is_set()]:
            log.info("Generation cancelled after %d tokens: the client went away.", seq.n_out)
            self._finish(seq, "stop", False)
        if not self._active:
            return
        limits = self.limits
        batch = self._batch
        entries: list[tuple[Sequence, int, int, bool]] = []  # seq, token, position, wants logits
        decoding = [s for s in self._active if not s.prefilling]
        for seq in decoding:
            entries.append((seq, seq.last, len(self._slots[seq.slot].cached), True))
        room = limits.n_batch - len(entries)
        if decoding:
            room = min(room, limits.prefill_chunk)
        first: Sequence | None = None
        for seq in list(self._active):
            if room <= 0:
                break
            if not seq.prefilling or (seq.lender is not None and not self._borrow(seq)):
                continue
            if decoding and first is not None and seq.submitted - first.submitted > _TOGETHER_S:
                # Joining a running batch: requests that arrived one after another start streaming
                # one after another (a step apart); a burst that arrived together joins together.
                break
            first = first or seq
            take = min(room, len(seq.tokens) - seq.fed)
            for k in range(seq.fed, seq.fed + take):
                entries.append((seq, seq.tokens[k], k, k == len(seq.tokens) - 1))
            room -= take
        if not entries:
            return
        assert len(entries) <= limits.n_batch
        for i, (seq, token, pos, logits) in enumerate(entries):
            if not 0 <= token < self.n_vocab or not 0 <= pos < self.n_ctx_seq:
                raise RuntimeError(f"invalid batch entry: token {token} at position {pos}")
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq.slot
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        threads = self.tuner.choose(len(entries))
        if threads != self._threads:
            lc.llama_set_n_threads(self._ctx, threads, threads)
            self._threads = threads
        started = time.perf_counter()
        rc = lc.llama_decode(self._ctx, batch)
        self.tuner.record(threads, len(entries), time.perf_counter() - started)
        self.steps += 1
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        for seq, token, _pos, _logits in entries:
            self._slots[seq.slot].cached.append(token)
            if seq.prefilling:
                seq.fed += 1
        for i, (seq, _token, _pos, logits) in enumerate(entries):
            if logits and seq.chain is not None:
                self._sample(seq, i)

    def _sample(self, seq: Sequence, index: int) -> None:
        lc = self._lc
        lp: TokenLogprob | None = None
        if seq.logprobs is not None:
            ptr = lc.llama_get_logits_ith(self._ctx, index)
            if not ptr:
                raise RuntimeError(f"no logits for batch index {index}")
            logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32, copy=True)
        token = int(lc.llama_sampler_sample(seq.chain, self._ctx, index))
        if seq.first_token_s is None:
            seq.first_token_s = time.monotonic() - seq.submitted
        if not 0 <= token < self.n_vocab:
            raise RuntimeError(f"the sampler returned token {token}")
        if self._is_eog(token):
            self._finish(seq, "stop", token == self._eom_id)
            return
        seq.n_out += 1
        if seq.logprobs is not None:
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
