"""Server-sent events: provider async generators straight to the wire (sse-starlette), no sleeps.

A failure after the stream has started cannot change the HTTP status any more, so it becomes one
``data: {"error": {...}}`` frame (the shape the openai SDK raises as APIError), then the stream ends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeVar

from pydantic import BaseModel
from sse_starlette import EventSourceResponse
from starlette.requests import Request

from ..errors import StackError

log = logging.getLogger(__name__)


def error_frame(exc: BaseException) -> str:
    if isinstance(exc, StackError):
        status, message = exc.status_code, exc.detail
    else:
        log.exception("Stream failed", exc_info=exc)
        status, message = 500, f"Internal server error ({type(exc).__name__}); see the server log."
    return json.dumps({"error": {"message": message, "code": status, "type": type(exc).__name__}})


T = TypeVar("T")


def sse_response(
    head: Iterable[BaseModel],
    source: AsyncIterator[T],
    convert: Callable[[T], Iterable[BaseModel]],
    *,
    done_marker: bool,
) -> EventSourceResponse:
    """Streams ``head`` events, then ``convert(item)`` for each item of ``source``."""

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            for event in head:
                yield {"data": event.model_dump_json()}
            async for item in source:
                for event in convert(item):
                    yield {"data": event.model_dump_json()}
        except Exception as exc:
            yield {"data": error_frame(exc)}
            return
        finally:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                await closer()
        if done_marker:
            yield {"data": "[DONE]"}

    return EventSourceResponse(events(), sep="\n")


def typed_event_response(source: AsyncIterator[BaseModel]) -> EventSourceResponse:
    """Streams events that carry their own ``type`` as ``event: <type>`` plus the JSON (OpenAI's
    Responses stream); the source reports its own failures, and there is no ``[DONE]``."""

    async def events() -> AsyncIterator[dict[str, str]]:
        async for event in source:
            yield {"event": str(getattr(event, "type", "message")), "data": event.model_dump_json()}

    return EventSourceResponse(events(), sep="\n")


def wants_done_marker(request: Request) -> bool:
    """OpenAI streams end with ``data: [DONE]``, which OpenAI clients expect; llama-stack-client parses
    every event as JSON and fails on it (the reference server never sends it), so it does not get one."""
    return "LlamaStackClient/" not in request.headers.get("user-agent", "")


async def prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item
