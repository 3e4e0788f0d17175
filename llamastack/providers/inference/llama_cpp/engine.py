"""One loaded GGUF model: prompt rendering, a fair FIFO queue, and generation by its batch scheduler.

Up to ``max_parallel`` requests decode together (batching.py); more wait in arrival order, and a full
queue answers 503 with Retry-After. The event loop never blocks: tokens cross from the scheduler's
thread with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamastack.stack.apis.inference.core import (
    ChatMessage,
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
)
from llamastack.stack.errors import BadRequestError, ContextLengthExceededError, ServerBusyError
from llamastack.stack.library_imports import library_imports

from ...utils.gbnf import check_grammar
from ...utils.local_generation import await_generation, stream_generation
from .batching import BatchScheduler, Limits, Sequence
from .config import LlamaCppConfig
from .cpu_kernels import weights_without_amx
from .process_streams import keep_process_streams

log = logging.getLogger(__name__)

_GRAMMAR_CACHE = 64  # checked grammars kept per model (agents and tools repeat theirs)
_TOKENIZER_CTX = 64


# llama-cpp-python's JSON-schema converter lets string characters include raw control characters
# (a literal newline inside a JSON string), which is not JSON. Strings get JSON's own rule instead.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _json_grammar(schema_json: str) -> str:
    with library_imports:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_json).replace(_LOOSE_CHAR, _JSON_CHAR)


@dataclass(frozen=True, slots=True)
class RenderedChat:
    prompt: str
    add_bos: bool
    stops: list[str]


class LlamaCppModel:
    def __init__(self, path: Path, config: LlamaCppConfig, *, grow: bool = True) -> None:
        """``grow``: start making the KV cache of every slot now (the model serves one request at a
        time until it is made, about half a second later; see batching.py)."""
        with library_imports:
            import llama_cpp

        keep_process_streams()  # other threads' log lines are not lost while this model loads
        self.path = path
        self.config = config
        # This Llama object tokenizes, renders and detokenizes; generation runs in the scheduler's own
        # multi-sequence context, so its context is kept minimal.
        with weights_without_amx(llama_cpp, allow_amx=config.amx):
            self.llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=_TOKENIZER_CTX, n_batch=_TOKENIZER_CTX, n_threads=1, verbose=False
            )
        self.n_vocab = self.llm.n_vocab()
        self._grammars: dict[tuple[str | None, str | None], str] = {}
        self._vocab = self.llm._model.vocab
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._eom_id = self._single_token("<|eom_id|>")
        # Llama 3 starts tool calls with <|python_tag|>; it is a special token, but the tool-call
        # parser needs to see it (code-interpreter calls are recognised by it).
        self._python_tag_id = self._single_token("<|python_tag|>")
        self._formatter = self._make_formatter(llama_cpp)
        self._max_parallel = config.max_parallel
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._recent_s: float | None = None  # seconds one request holds its place, recently
        try:
            self._scheduler = BatchScheduler(
                self.llm,
                Limits(
                    max_parallel=config.max_parallel,
                    n_ctx=config.n_ctx,
                    n_batch=max(config.n_batch, config.max_parallel),
                    prefill_chunk=config.prefill_chunk,
                    prefix_reuse=config.prefix_reuse,
                ),
                config.n_threads,
                is_eog=lambda t: bool(self._is_eog(self._vocab, t)),
                eom_id=self._eom_id,
                python_tag_id=self._python_tag_id,
                name=path.stem,
            )
        except BaseException:
            self.llm.close()
            raise
        self.n_ctx = config.n_ctx
        if grow:
            self._scheduler.grow()

    # --- set-up -------------------------------------------------------------------------------

    def _single_token(self, text: str) -> int | None:
        ids = self.llm.tokenize(text.encode(), add_bos=False, special=True)
        return ids[0] if len(ids) == 1 else None

    def _make_formatter(self, llama_cpp: Any) -> Callable[..., Any]:
        with library_imports:
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
        self._scheduler.close()
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

    def _probed_grammar(self, text: str, from_schema: bool) -> str:
        """llama.cpp's own parser is asked too, on the event loop (it reads the model's vocabulary):
        it answers a grammar it rejects with a null sampler that llama-cpp-python would use and
        crash on."""
        import llama_cpp

        probe = llama_cpp.llama_sampler_init_grammar(self._vocab, text.encode(), b"root")
        if not probe:
            source = "grammar made from the JSON schema" if from_schema else "grammar"
            raise BadRequestError(
                f"llama.cpp rejected the {source} (for example a <token> that is not exactly one token "
                "of this model's vocabulary); check it against llama.cpp's GBNF syntax."
            )
        llama_cpp.llama_sampler_free(probe)
        return text  # each sequence builds its own grammar sampler from it (they hold parse state)

    async def grammar_for(self, json_schema: dict[str, Any] | None, gbnf: str | None) -> str | None:
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

    # --- the async face -----------------------------------------------------------------------

    @property
    def _waiting(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> int:
        """How long a new request would wait: the queue ahead of it drains max_parallel at a time, at
        the recent pace of one request."""
        rounds = self._waiting // self._max_parallel + 1
        return max(1, math.ceil(rounds * (self._recent_s or 1.0)))

    async def _enter_queue(self, model_id: str) -> None:
        """A place among the max_parallel running sequences, in arrival order, or 503 if too many wait."""
        if self._running < self._max_parallel and not self._waiters:
            self._running += 1
            return
        if self._waiting >= self.config.max_queued_requests:
            wait = self.retry_after_s()
            raise ServerBusyError(
                f"Model '{model_id}' has {self._waiting} requests waiting (about {wait} s of work); "
                f"try again in {wait} s.",
                retry_after_s=wait,
            )
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn  # the place is handed over by _leave_queue
        except asyncio.CancelledError:
            if turn in self._waiters:
                self._waiters.remove(turn)
            elif turn.done() and not turn.cancelled():
                self._leave_queue()  # handed a place just as the caller left: pass it on
            raise

    def _leave_queue(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._running -= 1

    def _submit(
        self,
        tokens: list[int],
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: str | None,
        emit: Callable[[GenerationChunk], None] | None,
    ) -> tuple[asyncio.Future[GenerationResult], threading.Event]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GenerationResult] = loop.create_future()
        started = time.monotonic()

        def settle(outcome: GenerationResult | BaseException) -> None:  # on the loop
            took = time.monotonic() - started
            # An exponential average of how long one request holds its place, for Retry-After.
            self._recent_s = took if self._recent_s is None else 0.7 * self._recent_s + 0.3 * took
            self._leave_queue()
            if future.done():
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        def done(outcome: GenerationResult | BaseException) -> None:  # on the worker thread
            with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown): nobody waits
                loop.call_soon_threadsafe(settle, outcome)

        seq = Sequence(tokens, budget, sampling, stops, grammar, emit, done)
        self._scheduler.submit(seq)
        return future, seq.cancel

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
        return await await_generation(
            lambda emit: self._submit(tokens, budget, sampling, stops, grammar, emit), self._leave_queue
        )

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
        stream = stream_generation(
            lambda emit: self._submit(tokens, budget, sampling, stops, grammar, emit), self._leave_queue
        )
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk
