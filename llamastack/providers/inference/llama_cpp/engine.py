"""One loaded GGUF model: prompt rendering, a fair FIFO queue, and generation in a worker thread.

llama.cpp contexts are not thread-safe, so each model runs one generation at a time on its own
thread. Requests wait in arrival order (asyncio.Lock is FIFO); a full queue answers 503. The event
loop never blocks: tokens cross from the worker thread with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import math
import random
import threading
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llamastack.stack.apis.inference.core import (
    ChatMessage,
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
    TokenLogprob,
    Usage,
)
from llamastack.stack.errors import BadRequestError, ContextLengthExceededError, ServerBusyError

from ...utils.gbnf import check_grammar
from .config import LlamaCppConfig

log = logging.getLogger(__name__)

_DONE = object()
_GRAMMAR_CACHE = 64  # compiled grammars kept per model (agents and tools repeat theirs)


class _LogprobRecorder:
    """A logits processor that keeps the raw logits of the step; they become logprobs once sampled."""

    def __init__(self) -> None:
        self.logits: np.ndarray | None = None

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        self.logits = np.array(scores, dtype=np.float32, copy=True)
        return scores

    def logprob(self, token: int, top_n: int, piece: Callable[[int], str]) -> TokenLogprob:
        logits = self.logits
        assert logits is not None
        shifted = logits - logits.max()
        logz = float(np.log(np.exp(shifted).sum()))
        lp = shifted - logz
        top: list[tuple[str, float]] = []
        if top_n > 0:
            idx = np.argpartition(-lp, top_n)[:top_n]
            idx = idx[np.argsort(-lp[idx])]
            top = [(piece(int(i)), float(lp[i])) for i in idx]
        return TokenLogprob(token=piece(token), logprob=float(lp[token]), top=top)


class _LogitBias:
    """A logits processor adding OpenAI's logit_bias (token id -> bias) to every step's logits."""

    def __init__(self, bias: dict[int, float]) -> None:
        self.ids = np.fromiter(bias.keys(), dtype=np.int64)
        self.values = np.fromiter(bias.values(), dtype=np.float32)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        scores[self.ids] += self.values
        return scores


# llama-cpp-python's JSON-schema converter lets string characters include raw control characters
# (a literal newline inside a JSON string), which is not JSON. Strings get JSON's own rule instead.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _json_grammar(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_json).replace(_LOOSE_CHAR, _JSON_CHAR)


@dataclass(frozen=True, slots=True)
class RenderedChat:
    prompt: str
    add_bos: bool
    stops: list[str]


def _hold_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that could still grow into a stop sequence."""
    keep = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                keep = max(keep, k)
                break
    return keep


class LlamaCppModel:
    def __init__(self, path: Path, config: LlamaCppConfig) -> None:
        import llama_cpp

        self.path = path
        self.config = config
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=config.n_ctx,
            n_threads=config.n_threads,
            n_threads_batch=config.n_threads_batch,
            n_batch=config.n_batch,
            verbose=False,
        )
        self.n_ctx = self.llm.n_ctx()
        self.n_vocab = self.llm.n_vocab()
        self._grammars: dict[tuple[str | None, str | None], Any] = {}
        self._vocab = self.llm._model.vocab
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._eom_id = self._single_token("<|eom_id|>")
        # Llama 3 starts tool calls with <|python_tag|>; it is a special token, but the tool-call
        # parser needs to see it (code-interpreter calls are recognised by it).
        self._python_tag_id = self._single_token("<|python_tag|>")
        self._formatter = self._make_formatter(llama_cpp)
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._recent_s: float | None = None  # seconds one request holds the model, recently
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-cpp-{path.stem}")

    # --- set-up -------------------------------------------------------------------------------

    def _single_token(self, text: str) -> int | None:
        ids = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def _make_formatter(self, llama_cpp: Any) -> Callable[..., Any]:
        from llama_cpp import llama_chat_format

        if self.config.chat_format:
            formatter = getattr(llama_chat_format, f"format_{self.config.chat_format}", None)
            if formatter is None:
                raise BadRequestError(f"Unknown llama.cpp chat_format '{self.config.chat_format}'.")
            return formatter
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BadRequestError(
                f"GGUF '{self.path.name}' has no chat template; set chat_format in the provider config."
            )
        model = self.llm._model
        return llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(model.token_eos()),
            bos_token=model.token_get_text(model.token_bos()),
            stop_token_ids=[model.token_eos()],
        )

    @property
    def gguf_name(self) -> str:
        meta = self.llm.metadata
        names = (meta.get("general.name"), meta.get("general.basename"), self.path.name)
        return " ".join(n for n in names if n)

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.llm.metadata
        return {
            "context_length": self.n_ctx,
            "architecture": meta.get("general.architecture"),
            "gguf_file": str(self.path),
        }

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.llm.close()

    # --- prompts ------------------------------------------------------------------------------

    def render_chat(self, messages: list[ChatMessage]) -> RenderedChat:
        """The messages through the model's chat template: pure Python (Jinja), so callers may run it
        in a worker thread; it does not touch the llama.cpp model."""
        rendered: list[dict[str, Any]] = []
        for m in messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.tool_call_id is not None:
                item["tool_call_id"] = m.tool_call_id
            if m.tool_calls:
                item["tool_calls"] = m.tool_calls
            rendered.append(item)
        try:
            result = self._formatter(messages=rendered)
        except Exception as exc:  # templates raise on role orders they do not accept
            raise BadRequestError(f"The model's chat template rejected the messages: {exc}") from None
        stops = [s for s in ([result.stop] if isinstance(result.stop, str) else result.stop or [])]
        return RenderedChat(result.prompt, not result.added_special, stops)

    def chat_tokens(self, chat: RenderedChat) -> tuple[list[int], list[str]]:
        tokens = self.llm.tokenize(chat.prompt.encode(), add_bos=chat.add_bos, special=True)
        return tokens, chat.stops

    def raw_prompt(self, prompt: str) -> list[int]:
        """A prompt already rendered with its special tokens written out (e.g. Llama 3's format)."""
        return self.llm.tokenize(prompt.encode(), add_bos=False, special=True)

    def completion_prompt(self, prompt: str) -> list[int]:
        tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=False)
        if not tokens and self.llm.token_bos() >= 0:
            # An empty prompt on a model that adds no BOS itself: continue from BOS, as OpenAI does
            # from its own start token (llama.cpp cannot decode an empty batch).
            tokens = [self.llm.token_bos()]
        return tokens

    def check_tokens(self, sampling: SamplingOptions) -> None:
        """Token ids from the client must exist: llama.cpp indexes its arrays with them unchecked."""
        bad = sorted(t for t in sampling.logit_bias or {} if not 0 <= t < self.n_vocab)
        if bad:
            raise BadRequestError(
                f"logit_bias names token id(s) {', '.join(map(str, bad[:5]))} outside this model's "
                f"vocabulary (ids 0-{self.n_vocab - 1})."
            )
        if sampling.logprobs is not None and not 0 <= sampling.logprobs <= min(20, self.n_vocab):
            raise BadRequestError("logprobs: ask for at most 20 top tokens.")

    def check_context(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """Returns how many tokens may be generated; raises 400 if the request cannot fit."""
        if prompt_tokens == 0:
            raise BadRequestError("The prompt is empty; send some text to complete.")
        if prompt_tokens >= self.n_ctx or prompt_tokens + (max_tokens or 0) > self.n_ctx:
            raise ContextLengthExceededError(
                limit=self.n_ctx, prompt_tokens=prompt_tokens, max_tokens=max_tokens
            )
        return max_tokens or (self.n_ctx - prompt_tokens)

    def _checked_grammar(self, gbnf: str | None, schema_json: str | None) -> str:
        """The GBNF text of a client grammar or JSON schema, checked, or a 400. Pure Python (the JSON
        schema converter and our checker), so it runs in a worker thread; it does not touch the
        llama.cpp model.

        Our own checker gives the precise message and stops what llama.cpp's parser cannot survive
        (deep nesting, token ids past the vocabulary).
        """
        what = "JSON schema" if schema_json is not None else "grammar"
        if schema_json is not None:
            try:
                gbnf = _json_grammar(schema_json)
            except Exception as exc:  # the converter raises plain exceptions on schemas it cannot map
                raise BadRequestError(f"The JSON schema could not be turned into a grammar: {exc}") from None
        text = gbnf or ""
        try:
            token_ids = check_grammar(text)
        except BadRequestError as exc:
            if schema_json is None:
                raise
            raise BadRequestError(f"The JSON schema cannot be enforced as a grammar: {exc.detail}") from None
        for token_id in token_ids:
            if token_id >= self.n_vocab:
                raise BadRequestError(
                    f"The {what} names token <[{token_id}]>, but the model's vocabulary has "
                    f"{self.n_vocab} tokens (ids 0-{self.n_vocab - 1})."
                )
        return text

    def _probed_grammar(self, text: str, from_schema: bool) -> Any:
        """llama.cpp's own parser is asked too, on the event loop (it reads the model's vocabulary):
        it answers a grammar it rejects with a null sampler that llama-cpp-python would use and
        crash on."""
        import llama_cpp
        from llama_cpp import LlamaGrammar

        probe = llama_cpp.llama_sampler_init_grammar(self._vocab, text.encode(), b"root")
        if not probe:
            source = "grammar made from the JSON schema" if from_schema else "grammar"
            raise BadRequestError(
                f"llama.cpp rejected the {source} (for example a <token> that is not exactly one token "
                "of this model's vocabulary); check it against llama.cpp's GBNF syntax."
            )
        llama_cpp.llama_sampler_free(probe)
        return LlamaGrammar.from_string(text, verbose=False)

    async def grammar_for(self, json_schema: dict[str, Any] | None, gbnf: str | None) -> Any:
        """A grammar llama.cpp can use, or a 400: client grammars never reach it unchecked. Compiled
        grammars are cached (agents and tools repeat theirs); the cache is only touched on the loop."""
        if json_schema is None and gbnf is None:
            return None
        schema_json = json.dumps(json_schema, sort_keys=True) if json_schema is not None else None
        key = (gbnf, schema_json)
        grammar = self._grammars.get(key)
        if grammar is None:
            text = await asyncio.to_thread(self._checked_grammar, gbnf, schema_json)
            grammar = self._probed_grammar(text, schema_json is not None)
            self._grammars[key] = grammar
            if len(self._grammars) > _GRAMMAR_CACHE:
                self._grammars.pop(next(iter(self._grammars)))
        return grammar

    # --- generation (worker thread) -------------------------------------------------------------

    def _generate(
        self,
        tokens: list[int],
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        emit: Callable[[GenerationChunk], None] | None,
        cancel: threading.Event,
    ) -> GenerationResult:
        from llama_cpp import LogitsProcessorList

        llm = self.llm
        # llama.cpp seeds are 32-bit; OpenAI's are 64-bit.
        llm.set_seed(sampling.seed & 0x7FFFFFFF if sampling.seed is not None else random.getrandbits(31))
        recorder = _LogprobRecorder() if sampling.logprobs is not None else None
        processors: list[Any] = [_LogitBias(sampling.logit_bias)] if sampling.logit_bias else []
        if recorder is not None:
            processors.append(recorder)
        greedy = not sampling.temperature
        stream = llm.generate(
            tokens,
            temp=0.0 if greedy else float(sampling.temperature or 0.0),
            top_k=sampling.top_k or 0,
            top_p=sampling.top_p or 1.0,
            min_p=0.0,
            repeat_penalty=sampling.repetition_penalty or 1.0,
            frequency_penalty=sampling.frequency_penalty or 0.0,
            presence_penalty=sampling.presence_penalty or 0.0,
            logits_processor=LogitsProcessorList(processors) if processors else None,
            grammar=grammar,
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        piece = self._piece
        text = ""  # generated text not yet emitted (held back for stop sequences)
        out: list[str] = []
        logprobs: list[TokenLogprob] | None = [] if recorder is not None else None
        pending_lp: list[TokenLogprob] = []
        finish = "length"
        end_of_message = False
        n = 0
        for token in stream:
            if cancel.is_set():
                log.info("Generation cancelled after %d tokens: the client went away.", n)
                finish = "stop"
                break
            if self._is_eog(self._vocab, token):
                finish, end_of_message = "stop", token == self._eom_id
                break
            n += 1
            if recorder is not None:
                pending_lp.append(recorder.logprob(token, sampling.logprobs or 0, piece))
            text += decoder.decode(llm.detokenize([token], special=token == self._python_tag_id))
            if stops:
                hit = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
                if hit >= 0:
                    text = text[:hit]
                    finish = "stop"
                    break
                ready = len(text) - _hold_back(text, stops)
            else:
                ready = len(text)
            if ready > 0:
                chunk, text = text[:ready], text[ready:]
                out.append(chunk)
                if logprobs is not None:
                    logprobs.extend(pending_lp)
                if emit is not None:
                    emit(GenerationChunk(text=chunk, logprobs=pending_lp or None))
                pending_lp = []
            if n >= budget:
                break
        text += decoder.decode(b"", final=True)
        if text:
            out.append(text)
            if emit is not None:
                emit(GenerationChunk(text=text, logprobs=pending_lp or None))
        if logprobs is not None:
            logprobs.extend(pending_lp)
        return GenerationResult(
            text="".join(out),
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=len(tokens), completion_tokens=n),
            end_of_message=end_of_message,
            logprobs=logprobs,
        )

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    # --- the async face -----------------------------------------------------------------------

    def retry_after_s(self) -> int:
        """How long a new request would wait: the running one and each queued one, at the recent pace."""
        return max(1, math.ceil((self._waiting + 1) * (self._recent_s or 1.0)))

    async def _enter_queue(self, model_id: str) -> None:
        if self._waiting >= self.config.max_queued_requests:
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
        # An exponential average of how long one request holds the model, for Retry-After.
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
        tokens: list[int],
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        *,
        model_id: str,
    ) -> GenerationResult:
        await self._enter_queue(model_id)
        cancel = threading.Event()
        try:
            future = self._start(tokens, budget, sampling, stops, grammar, None, cancel)
        except BaseException:
            self._lock.release()
            raise
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def generate_stream(
        self,
        tokens: list[int],
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        *,
        model_id: str,
    ) -> AsyncGenerator[GenerationChunk, None]:
        await self._enter_queue(model_id)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def emit(chunk: GenerationChunk) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)

        try:
            future = self._start(tokens, budget, sampling, stops, grammar, emit, cancel)
        except BaseException:
            self._lock.release()
            raise
        future.add_done_callback(lambda _: queue.put_nowait(_DONE))
        try:
            while (item := await queue.get()) is not _DONE:
                yield item
            result = future.result()
            yield GenerationChunk(
                finish_reason=result.finish_reason, usage=result.usage, end_of_message=result.end_of_message
            )
        finally:
            cancel.set()
