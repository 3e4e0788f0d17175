"""What the in-process inference providers (llama.cpp, transformers) share: the four generation methods
of the InferenceProvider surface over a prepared request, and the hand-over of a generation running on
a worker thread to the event loop.

A provider prepares a request (prompt, token budget, stops, grammar) in its own way; from there,
generating, streaming, cancelling and parsing tool calls are the same for every local engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

from llamastack.stack.apis.inference.core import (
    ChatRequest,
    CompletionRequest,
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
)
from llamastack.stack.apis.models import Model

from .tool_calls import apply_to_result, apply_to_stream

Emit = Callable[[GenerationChunk], None]
# Starts a generation on the worker thread: its outcome, and the event that cancels it.
Start = Callable[[Emit | None], tuple["asyncio.Future[GenerationResult]", threading.Event]]

_DONE = object()


class LocalEngine(Protocol):
    """One loaded model of a local provider: generation behind its own queue."""

    async def generate(
        self,
        prompt: Any,
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        *,
        model_id: str,
    ) -> GenerationResult: ...

    def generate_stream(
        self,
        prompt: Any,
        budget: int,
        sampling: SamplingOptions,
        stops: list[str],
        grammar: Any,
        *,
        model_id: str,
    ) -> AsyncGenerator[GenerationChunk, None]: ...


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request made ready for an engine: the prompt in the engine's own form and what bounds it."""

    engine: LocalEngine
    prompt: Any
    budget: int
    stops: list[str]
    grammar: Any
    builtin: list[str] = field(default_factory=list)  # built-in tools the model's format knows
    version: str | None = None  # the Llama 3.x version, which selects the tool-call parsers


class LocalGeneration(ABC):
    """chat, chat_stream, complete and complete_stream for a provider that prepares requests itself."""

    @abstractmethod
    async def _prepare_chat(self, model: Model, request: ChatRequest) -> Prepared: ...

    @abstractmethod
    async def _prepare_completion(self, model: Model, request: CompletionRequest) -> Prepared: ...

    async def chat(self, model: Model, request: ChatRequest) -> GenerationResult:
        p = await self._prepare_chat(model, request)
        result = await p.engine.generate(
            p.prompt, p.budget, request.sampling, p.stops, p.grammar, model_id=model.identifier
        )
        if request.tools is not None and request.tools.active:
            result = apply_to_result(result, request.tools, p.builtin, llama_version=p.version)
        return result

    async def chat_stream(self, model: Model, request: ChatRequest) -> AsyncGenerator[GenerationChunk, None]:
        # Errors in preparing come with the first chunk, which routes wait for before they answer.
        p = await self._prepare_chat(model, request)
        stream = p.engine.generate_stream(
            p.prompt, p.budget, request.sampling, p.stops, p.grammar, model_id=model.identifier
        )
        if request.tools is not None and request.tools.active:
            stream = apply_to_stream(stream, request.tools, p.builtin, llama_version=p.version)
        async with aclosing(stream):  # closing it cancels the generation
            async for chunk in stream:
                yield chunk

    async def complete(self, model: Model, request: CompletionRequest) -> GenerationResult:
        p = await self._prepare_completion(model, request)
        return await p.engine.generate(
            p.prompt, p.budget, request.sampling, p.stops, p.grammar, model_id=model.identifier
        )

    async def complete_stream(
        self, model: Model, request: CompletionRequest
    ) -> AsyncGenerator[GenerationChunk, None]:
        p = await self._prepare_completion(model, request)
        stream = p.engine.generate_stream(
            p.prompt, p.budget, request.sampling, p.stops, p.grammar, model_id=model.identifier
        )
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk


async def await_generation(start: Start, release: Callable[[], None]) -> GenerationResult:
    """Runs a generation to its end; the caller going away cancels it. `release` gives back the queue
    place the caller holds if the generation cannot even start."""
    try:
        future, cancel = start(None)
    except BaseException:
        release()
        raise
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        raise


async def stream_generation(
    start: Start, release: Callable[[], None]
) -> AsyncGenerator[GenerationChunk, None]:
    """Relays a generation's chunks from the worker thread, then a last chunk with the finish reason
    and usage; closing the stream (the client went away) cancels the generation."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def emit(chunk: GenerationChunk) -> None:  # on the worker thread
        with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown)
            loop.call_soon_threadsafe(queue.put_nowait, chunk)

    try:
        future, cancel = start(emit)
    except BaseException:
        release()
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


def hold_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that could still grow into a stop sequence."""
    keep = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                keep = max(keep, k)
                break
    return keep


__all__ = [
    "LocalEngine",
    "LocalGeneration",
    "Prepared",
    "await_generation",
    "hold_back",
    "stream_generation",
]
