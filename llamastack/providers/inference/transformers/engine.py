"""One loaded transformers model: a fair FIFO queue and ``generate`` in a worker thread.

A model runs one generation at a time on its own thread (a GPU serves one batch well; two threads
would only contend). Requests wait in arrival order (asyncio.Lock is FIFO); a full queue answers 503.
Tokens reach the event loop through a streamer the worker thread calls once per step; stop
sequences, cancellation and logprobs are handled there too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from llamastack.stack.apis.inference.core import (
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
    TokenLogprob,
    Usage,
)
from llamastack.stack.errors import BadRequestError, ContextLengthExceededError, ServerBusyError

from ...utils.local_generation import await_generation, hold_back, stream_generation
from .grammar import GrammarProcessor
from .loading import Loaded

log = logging.getLogger(__name__)

# End-of-turn tokens of the chat formats this provider meets (Llama 3, ChatML); added to the model's own.
_END_TOKENS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>")


@dataclass(slots=True)
class Prompt:
    """What ``generate`` takes: input_ids, attention_mask and, for vision, the processor's image tensors."""

    inputs: dict[str, Any]
    n_tokens: int
    image_shape: tuple[int, ...] | None = None  # pixel_values' shape, when an image was passed


@dataclass(slots=True)
class _Step:
    """The state of one generation, shared by the streamer, the stopping criterion and the processors."""

    tokenizer: Any
    stops: list[str]
    budget: int
    end_ids: set[int]
    eom_id: int | None
    hidden_ids: set[int]
    emit: Callable[[GenerationChunk], None] | None
    cancel: threading.Event
    top_logprobs: int | None
    scores: Any = None  # the last step's logits row, kept by the logprob recorder
    ids: list[int] = field(default_factory=list)  # visible generated ids
    decoded: str = ""  # the text of ``ids`` so far
    pending: str = ""  # decoded text held back (stop sequences)
    pending_lp: list[TokenLogprob] = field(default_factory=list)
    out: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    n: int = 0
    finish: str = "length"
    end_of_message: bool = False
    done: bool = False
    prompt_seen: bool = False

    # --- the streamer interface generate() calls -----------------------------------------------

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first hands the streamer the prompt
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if not self.done:
                self._token(int(token))

    def end(self) -> None:
        if self.pending:
            self._flush(self.pending)
            self.pending = ""
        elif self.pending_lp and self.emit is not None:
            self.emit(GenerationChunk(logprobs=self.pending_lp))
        if self.logprobs is not None:
            self.logprobs.extend(self.pending_lp)
        self.pending_lp = []

    # --- per token ----------------------------------------------------------------------------

    def _token(self, token: int) -> None:
        if self.cancel.is_set():
            log.info("Generation cancelled after %d tokens: the client went away.", self.n)
            self.finish, self.done = "stop", True
            return
        if token in self.end_ids:
            self.finish, self.done = "stop", True
            self.end_of_message = token == self.eom_id
            return
        self.n += 1
        if self.top_logprobs is not None and self.scores is not None:
            self.pending_lp.append(self._logprob(token))
        if token not in self.hidden_ids:
            self.ids.append(token)
            text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
            if not text.endswith("\ufffd"):  # a multi-byte character still incomplete
                self.pending += text[len(self.decoded) :]
                self.decoded = text
        if self.stops:
            hit = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
            if hit >= 0:
                self.pending = self.pending[:hit]
                self.finish, self.done = "stop", True
                return
            ready = len(self.pending) - hold_back(self.pending, self.stops)
        else:
            ready = len(self.pending)
        if ready > 0:
            chunk, self.pending = self.pending[:ready], self.pending[ready:]
            self._flush(chunk)
        if self.n >= self.budget:
            self.done = True

    def _flush(self, text: str) -> None:
        self.out.append(text)
        if self.logprobs is not None:
            self.logprobs.extend(self.pending_lp)
        if self.emit is not None:
            self.emit(GenerationChunk(text=text, logprobs=self.pending_lp or None))
        self.pending_lp = []

    def _logprob(self, token: int) -> TokenLogprob:
        import torch

        lp = torch.log_softmax(self.scores.float(), dim=-1)
        top: list[tuple[str, float]] = []
        if self.top_logprobs:
            values, idx = torch.topk(lp, self.top_logprobs)
            top = [(self._piece(int(i)), float(v)) for v, i in zip(values, idx, strict=True)]
        return TokenLogprob(token=self._piece(token), logprob=float(lp[token]), top=top)

    def _piece(self, token: int) -> str:
        return str(self.tokenizer.decode([token], skip_special_tokens=False))


class _Recorder:
    """A logits processor keeping the step's logits for logprobs (after the sampling processors)."""

    def __init__(self, step: _Step) -> None:
        self.step = step

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.step.scores = scores[0].detach()
        return scores


class _Penalties:
    """OpenAI's logit_bias, frequency_penalty and presence_penalty, which transformers lacks."""

    def __init__(self, sampling: SamplingOptions, prompt_len: int) -> None:
        self.bias = sampling.logit_bias or {}
        self.frequency = sampling.frequency_penalty or 0.0
        self.presence = sampling.presence_penalty or 0.0
        self.prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for token, bias in self.bias.items():
            scores[:, token] += bias
        if self.frequency or self.presence:
            generated = input_ids[:, self.prompt_len :]
            if generated.shape[1]:
                counts = torch.zeros_like(scores).scatter_add_(
                    1, generated, torch.ones_like(generated, dtype=scores.dtype)
                )
                scores -= self.frequency * counts + self.presence * (counts > 0).to(scores.dtype)
        return scores


class _Stop:
    """A stopping criterion: the streamer decided (end token, stop sequence, budget, cancellation)."""

    def __init__(self, step: _Step) -> None:
        self.step = step

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.step.done, dtype=torch.bool, device=input_ids.device)


class TransformersModel:
    def __init__(self, loaded: Loaded, *, max_queued: int, name: str) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.n_ctx = loaded.context_length
        self.vocab_size = int(self.model.config.get_text_config().vocab_size)
        self.end_ids = self._end_ids()
        self.eom_id = self._single_token("<|eom_id|>")
        # Llama 3 starts tool calls with <|python_tag|>; the tool-call parser needs to see it.
        python_tag = self._single_token("<|python_tag|>")
        self.hidden_ids = {int(i) for i in self.tokenizer.all_special_ids if i != python_tag}
        self.max_queued = max_queued
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._recent_s: float | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"transformers-{name}")
        self.last_prompt: Prompt | None = None  # what the last generation saw (for /v1/models metadata)

    def _single_token(self, text: str) -> int | None:
        ids = self.tokenizer.convert_tokens_to_ids([text])
        unk = self.tokenizer.unk_token_id
        return int(ids[0]) if ids and ids[0] is not None and ids[0] != unk else None

    def _end_ids(self) -> set[int]:
        ids: set[int] = set()
        config_eos = getattr(self.model.generation_config, "eos_token_id", None)
        for value in (config_eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list):
                ids.update(int(v) for v in value)
        ids.update(i for t in _END_TOKENS if (i := self._single_token(t)) is not None)
        return ids

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # --- checks -------------------------------------------------------------------------------

    def check_context(self, prompt_tokens: int, max_tokens: int | None) -> int:
        if prompt_tokens == 0:
            raise BadRequestError("The prompt is empty; send some text to complete.")
        if prompt_tokens >= self.n_ctx or prompt_tokens + (max_tokens or 0) > self.n_ctx:
            raise ContextLengthExceededError(
                limit=self.n_ctx, prompt_tokens=prompt_tokens, max_tokens=max_tokens
            )
        return max_tokens or (self.n_ctx - prompt_tokens)

    def check_tokens(self, sampling: SamplingOptions) -> None:
        bad = sorted(t for t in sampling.logit_bias or {} if not 0 <= t < self.vocab_size)
        if bad:
            raise BadRequestError(
                f"logit_bias names token id(s) {', '.join(map(str, bad[:5]))} outside this model's "
                f"vocabulary (ids 0-{self.vocab_size - 1})."
            )
        if sampling.logprobs is not None and not 0 <= sampling.logprobs <= 20:
            raise BadRequestError("logprobs: ask for at most 20 top tokens.")

    # --- generation (worker thread) -------------------------------------------------------------

    def _generate(
        self,
        prompt: Prompt,
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        emit: Callable[[GenerationChunk], None] | None,
        cancel: threading.Event,
    ) -> GenerationResult:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        step = _Step(
            tokenizer=self.tokenizer,
            stops=stops,
            budget=budget,
            end_ids=self.end_ids,
            eom_id=self.eom_id,
            hidden_ids=self.hidden_ids,
            emit=emit,
            cancel=cancel,
            top_logprobs=sampling.logprobs,
            logprobs=[] if sampling.logprobs is not None else None,
        )
        processors: list[Any] = []
        if sampling.logit_bias or sampling.frequency_penalty or sampling.presence_penalty:
            processors.append(_Penalties(sampling, prompt.n_tokens))
        if grammar is not None:  # a compiled grammar; its logits processor keeps per-generation state
            processors.append(GrammarProcessor(grammar))
        if sampling.logprobs is not None:
            processors.append(_Recorder(step))
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed & 0xFFFF_FFFF_FFFF_FFFF)  # OpenAI's seeds may be negative
        sample = bool(sampling.temperature)
        options: dict[str, Any] = {
            "max_new_tokens": budget,
            "do_sample": sample,
            "repetition_penalty": sampling.repetition_penalty or 1.0,
            "eos_token_id": sorted(self.end_ids) or None,
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else min(self.end_ids, default=0),
        }
        if sample:
            options.update(
                temperature=sampling.temperature, top_p=sampling.top_p or 1.0, top_k=sampling.top_k or 0
            )
        else:  # the model's generation_config may carry sampling defaults; greedy means none of them
            options.update(temperature=None, top_p=None, top_k=None)
        device = self.model.device
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in prompt.inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        try:
            with torch.inference_mode():
                self.model.generate(
                    **inputs,
                    **options,
                    streamer=step,
                    logits_processor=LogitsProcessorList(processors),
                    stopping_criteria=StoppingCriteriaList([_Stop(step)]),
                )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise ServerBusyError(
                "The GPU ran out of memory for this request; retry later, or send a shorter prompt "
                "or a smaller max_tokens.",
                retry_after_s=self.retry_after_s(),
            ) from None
        step.end()
        self.last_prompt = prompt
        return GenerationResult(
            text="".join(step.out),
            finish_reason=step.finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=prompt.n_tokens, completion_tokens=step.n),
            end_of_message=step.end_of_message,
            logprobs=step.logprobs,
        )

    # --- the async face -----------------------------------------------------------------------

    def retry_after_s(self) -> int:
        return max(1, math.ceil((self._waiting + 1) * (self._recent_s or 1.0)))

    async def _enter_queue(self, model_id: str) -> None:
        if self._waiting >= self.max_queued:
            wait = self.retry_after_s()
            raise ServerBusyError(
                f"Model '{model_id}' has {self._waiting} requests waiting (about {wait} s of work); "
                f"try again in {wait} s.",
                retry_after_s=wait,
            )
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1

    def _finished(self, started: float) -> None:
        took = time.monotonic() - started
        self._recent_s = took if self._recent_s is None else 0.7 * self._recent_s + 0.3 * took
        self._lock.release()

    def _start(self, *args: Any) -> asyncio.Future[GenerationResult]:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        future = loop.run_in_executor(self._executor, self._generate, *args)
        # The lock is released when the thread is done, even if the caller has gone away.
        future.add_done_callback(lambda _: self._finished(started))
        return future

    async def generate(
        self,
        prompt: Prompt,
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        *,
        model_id: str,
    ) -> GenerationResult:
        await self._enter_queue(model_id)
        return await await_generation(
            lambda emit: self._started(prompt, budget, sampling, stops, grammar, emit), self._lock.release
        )

    async def generate_stream(
        self,
        prompt: Prompt,
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        *,
        model_id: str,
    ) -> AsyncGenerator[GenerationChunk, None]:
        await self._enter_queue(model_id)
        stream = stream_generation(
            lambda emit: self._started(prompt, budget, sampling, stops, grammar, emit), self._lock.release
        )
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk

    def _started(
        self,
        prompt: Prompt,
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        emit: Callable[[GenerationChunk], None] | None,
    ) -> tuple[asyncio.Future[GenerationResult], threading.Event]:
        cancel = threading.Event()
        return self._start(prompt, budget, sampling, stops, grammar, emit, cancel), cancel
