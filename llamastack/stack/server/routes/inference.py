"""Inference API: native v0.2.12 routes and the OpenAI-compatible ones, both over the one core."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sys
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from ...apis.common import Order, TextContentItem, content_has_image
from ...apis.inference import native as n
from ...apis.inference import openai as o
from ...apis.inference.core import ChatRequest, CompletionRequest, GenerationChunk, GenerationResult
from ...errors import BadRequestError, UnsupportedError
from ...routing.chat_completions import ChatCompletionStore
from ...translate import native as tn
from ...translate import openai as to
from ..deps import inference_api, json_response, stack_of
from ..route import StackRoute
from ..sse import prepend, sse_response, wants_done_marker

R = TypeVar("R", ChatRequest, CompletionRequest)
C = TypeVar("C")

router = APIRouter(tags=["Inference"], route_class=StackRoute)

_STREAM: dict[str, Any] = {"text/event-stream": {}}


_inference = inference_api


async def _started(stream: AsyncIterator[C]) -> AsyncIterator[C]:
    """Waits for the first chunk, so queue-full and engine errors still get a proper HTTP status."""
    first = await anext(stream)
    return prepend(first, stream)


@router.post(
    "/v1/inference/chat-completion",
    response_model=n.ChatCompletionResponse,
    responses={200: {"content": _STREAM}},
    summary="Generate a chat completion for the given messages using the specified model.",
)
async def chat_completion(request: Request, body: n.ChatCompletionRequest) -> Response:
    core = tn.chat_request_from_native(body)
    inference = _inference(request)
    if body.stream:
        stream = await _started(inference.chat_stream(body.model_id, core))
        return sse_response([tn.chat_stream_start()], stream, _native_text_fast, done_marker=False)
    return json_response(tn.chat_response(await inference.chat(body.model_id, core)))


@router.post(
    "/v1/inference/completion",
    response_model=n.CompletionResponse,
    responses={200: {"content": _STREAM}},
    summary="Generate a completion for the given content using the specified model.",
)
async def completion(request: Request, body: n.CompletionRequest) -> Response:
    core = tn.completion_request_from_native(body)
    inference = _inference(request)
    if body.stream:
        stream = await _started(inference.complete_stream(body.model_id, core))
        return sse_response([], stream, tn.completion_stream_chunks, done_marker=False)
    return json_response(tn.completion_response(await inference.complete(body.model_id, core)))


@router.post(
    "/v1/inference/batch-chat-completion",
    response_model=n.BatchChatCompletionResponse,
    summary="Generate chat completions for a batch of messages using the specified model.",
)
async def batch_chat_completion(request: Request, body: n.BatchChatCompletionRequest) -> Response:
    inference = _inference(request)
    shared = body.model_dump(exclude={"messages_batch"}, exclude_none=True)
    cores = [
        tn.chat_request_from_native(n.ChatCompletionRequest(**shared, messages=messages))
        for messages in body.messages_batch
    ]
    results = await _all([inference.chat(body.model_id, core) for core in cores])
    return json_response(n.BatchChatCompletionResponse(batch=[tn.chat_response(r) for r in results]))


@router.post(
    "/v1/inference/batch-completion",
    response_model=n.BatchCompletionResponse,
    summary="Generate completions for a batch of content using the specified model.",
)
async def batch_completion(request: Request, body: n.BatchCompletionRequest) -> Response:
    inference = _inference(request)
    shared = body.model_dump(exclude={"content_batch"}, exclude_none=True)
    cores = [
        tn.completion_request_from_native(n.CompletionRequest(**shared, content=content))
        for content in body.content_batch
    ]
    results = await _all([inference.complete(body.model_id, core) for core in cores])
    return json_response(n.BatchCompletionResponse(batch=[tn.completion_response(r) for r in results]))


@router.post(
    "/v1/inference/embeddings",
    response_model=n.EmbeddingsResponse,
    summary="Generate embeddings for content pieces using the specified model.",
)
async def embeddings(request: Request, body: n.EmbeddingsRequest) -> Response:
    texts: list[str] = []
    for i, item in enumerate(body.contents):
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, TextContentItem):
            texts.append(item.text)
        elif content_has_image(item):
            raise UnsupportedError(f"contents[{i}] is an image; this embedding model takes text only.")
    result = await _inference(request).embed(
        body.model_id, texts, truncate=body.text_truncation, dimensions=body.output_dimension
    )
    return json_response(n.EmbeddingsResponse(embeddings=result.embeddings))


def _float32_le(vector: list[float]) -> bytes:
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _include_usage(options: dict[str, Any] | None) -> bool:
    return bool(options and options.get("include_usage"))


def _nth(request: R, i: int) -> R:
    """The request for choice ``i`` of n: its own seed when a seed is given, so choices differ."""
    if i == 0 or request.sampling.seed is None:
        return request
    return dataclasses.replace(
        request, sampling=dataclasses.replace(request.sampling, seed=request.sampling.seed + i)
    )


async def _all(coros: list[Awaitable[C]]) -> list[C]:
    """n > 1 choices at once (engines that batch decode them together); one failing cancels the rest."""
    if len(coros) == 1:  # the usual case: no task to create and gather
        return [await coros[0]]
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


async def _close(stream: object) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()


async def _choices(
    first: AsyncIterator[object], rest: Callable[[int], AsyncIterator[object]], n: int
) -> AsyncIterator[tuple[int, object | None]]:
    """n > 1 choices generated at once, their chunks interleaved: (i, None) starts choice i, then
    (i, chunk) carries its chunks."""
    streams = [first, *(rest(i) for i in range(1, n))]
    queue: asyncio.Queue[tuple[int, object | None] | BaseException | None] = asyncio.Queue()

    async def pump(i: int) -> None:
        try:
            await queue.put((i, None))
            async for chunk in streams[i]:
                await queue.put((i, chunk))
            await queue.put(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put(exc)

    tasks = [asyncio.ensure_future(pump(i)) for i in range(n)]
    try:
        running = n
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            await _close(stream)


async def _stored_when_done(
    source: AsyncIterator[object],
    n: int,
    save: Callable[[list[GenerationResult]], Awaitable[None]],
) -> AsyncIterator[object]:
    """Passes a stream through and stores the whole completion once every choice has finished."""
    collected = to.StreamedChoices(n)
    async for item in source:
        index, chunk = cast("tuple[int, object]", item) if n > 1 else (0, item)
        if isinstance(chunk, GenerationChunk):
            collected.add(index, chunk)
        yield item
    results = collected.results()
    if results is not None:
        await save(results)


def _native_text_fast(chunk: GenerationChunk) -> list[n.ChatCompletionResponseStreamChunk] | list[bytes]:
    """Native stream chunks, a piece of plain text (most of a stream) encoded without its models."""
    text = tn.chat_stream_text_json(chunk)
    return tn.chat_stream_chunks(chunk) if text is None else [text]


def _text_fast(
    builder: to.ChatChunkBuilder,
) -> Callable[[GenerationChunk], list[o.OpenAIChatCompletionChunk] | list[bytes]]:
    """The builder's chunks, a piece of plain text (most of a stream) encoded without its models."""

    def convert(chunk: GenerationChunk) -> list[o.OpenAIChatCompletionChunk] | list[bytes]:
        text = builder.text_json(chunk)
        return builder.chunks(chunk) if text is None else [text]

    return convert


@router.post(
    "/v1/openai/v1/chat/completions",
    response_model=o.OpenAIChatCompletion,
    responses={200: {"content": _STREAM}},
    summary="Generate an OpenAI-compatible chat completion for the given messages using the specified model.",
)
async def openai_chat_completion(request: Request, body: o.OpenaiChatCompletionRequest) -> Response:
    core = to.chat_request_from_openai(body)
    inference = _inference(request)
    store = stack_of(request).chat_completions
    keep = store if store is not None and store.wants(body.store) else None
    n = body.n or 1
    if body.stream:
        stream = await _started(inference.chat_stream(body.model, core))
        builder = to.ChatChunkBuilder(body.model, _include_usage(body.stream_options), n)
        done = wants_done_marker(request)
        source: AsyncIterator[object] = stream
        if n > 1:
            source = _choices(stream, lambda i: inference.chat_stream(body.model, _nth(core, i)), n)
        if keep is not None:
            kept = keep

            async def save(results: list[GenerationResult]) -> None:
                completion = to.chat_completion(results, body.model, id=builder.id, created=builder.created)
                await kept.save(completion, body.messages)

            source = _stored_when_done(source, n, save)
        if n == 1:
            chunks = cast("AsyncIterator[GenerationChunk]", source)
            return sse_response([builder.first()], chunks, _text_fast(builder), done_marker=done)
        return sse_response([], source, builder.indexed, done_marker=done)
    results = await _all([inference.chat(body.model, _nth(core, i)) for i in range(n)])
    completion = to.chat_completion(results, body.model)
    if keep is not None:
        await keep.save(completion, body.messages)
    return json_response(completion)


def _chat_completions(request: Request) -> ChatCompletionStore:
    store = stack_of(request).chat_completions
    if store is None:
        raise BadRequestError("This server has no inference provider, so it keeps no chat completions.")
    return store


@router.get(
    "/v1/openai/v1/chat/completions",
    response_model=o.ListOpenAIChatCompletionResponse,
    summary="List all chat completions.",
)
async def list_chat_completions(
    request: Request,
    after: str | None = None,
    limit: int = 20,
    model: str | None = None,
    order: Order = Order.desc,
) -> Response:
    page = await _chat_completions(request).list(after=after, limit=limit, order=order, model=model)
    return json_response(page)


@router.get(
    "/v1/openai/v1/chat/completions/{completion_id}",
    response_model=o.OpenAICompletionWithInputMessages,
    summary="Describe a chat completion by its ID.",
)
async def get_chat_completion(request: Request, completion_id: str) -> Response:
    return json_response(await _chat_completions(request).get(completion_id))


@router.post(
    "/v1/openai/v1/completions",
    response_model=o.OpenAICompletion,
    responses={200: {"content": _STREAM}},
    summary="Generate an OpenAI-compatible completion for the given prompt using the specified model.",
)
async def openai_completion(request: Request, body: o.OpenaiCompletionRequest) -> Response:
    core = to.completion_request_from_openai(body)
    inference = _inference(request)
    n = body.n or 1
    if body.stream:
        stream = await _started(inference.complete_stream(body.model, core))
        builder = to.CompletionChunkBuilder(body.model, _include_usage(body.stream_options), n)
        done = wants_done_marker(request)
        if n == 1:
            return sse_response([], stream, builder.chunks, done_marker=done)
        choices = _choices(stream, lambda i: inference.complete_stream(body.model, _nth(core, i)), n)
        return sse_response([], choices, builder.indexed, done_marker=done)
    results = await _all([inference.complete(body.model, _nth(core, i)) for i in range(n)])
    return json_response(to.completion(results, body.model, core.prompt if body.echo else None))


@router.post(
    "/v1/openai/v1/embeddings",
    response_model=o.OpenAIEmbeddingsResponse,
    summary="Generate OpenAI-compatible embeddings for the given input using the specified model.",
)
async def openai_embeddings(request: Request, body: o.OpenaiEmbeddingsRequest) -> Response:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise BadRequestError("input: give at least one string to embed.")
    result = await _inference(request).embed(body.model, texts, dimensions=body.dimensions)
    if body.encoding_format == "base64":
        vectors: list[list[float] | str] = [
            base64.b64encode(_float32_le(v)).decode() for v in result.embeddings
        ]
    else:
        vectors = list(result.embeddings)
    return json_response(
        o.OpenAIEmbeddingsResponse(
            data=[o.OpenAIEmbeddingData(embedding=v, index=i) for i, v in enumerate(vectors)],
            model=body.model,
            usage=o.OpenAIEmbeddingUsage(
                prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
            ),
        )
    )


# The routes server/direct.py dispatches without FastAPI's request handling: path -> (body, function).
DIRECT_ROUTES: dict[str, tuple[type[BaseModel], Callable[[Request, Any], Awaitable[Response]]]] = {
    "/v1/inference/chat-completion": (n.ChatCompletionRequest, chat_completion),
    "/v1/inference/completion": (n.CompletionRequest, completion),
    "/v1/openai/v1/chat/completions": (o.OpenaiChatCompletionRequest, openai_chat_completion),
    "/v1/openai/v1/completions": (o.OpenaiCompletionRequest, openai_completion),
}
