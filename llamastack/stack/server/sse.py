"""Server-sent events: provider async generators straight to the wire, no sleeps.

Each event is encoded once, to the bytes of its frame (``data: <json>\\n\\n``), and handed to the
ASGI server as it comes: the response itself adds nothing per event. Around the stream it watches
for the client leaving (the stream is cancelled at once, which closes the provider's generator and
so stops the generation) and sends a comment line every ``PING_INTERVAL_S`` while it is open, so
proxies do not drop a quiet stream (an agent turn waiting on a tool).

A failure after the stream has started cannot change the HTTP status any more, so it becomes one
``data: {"error": {...}}`` frame (the shape the openai SDK raises as APIError), then the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import StackError

log = logging.getLogger(__name__)

PING_INTERVAL_S = 15.0
_HEADERS = {"Cache-Control": "no-store", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
_DONE = b"data: [DONE]\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def error_frame(exc: BaseException) -> str:
    if isinstance(exc, StackError):
        status, message = exc.status_code, exc.detail
    else:
        log.exception("Stream failed", exc_info=exc)
        status, message = 500, f"Internal server error ({type(exc).__name__}); see the server log."
    return json.dumps({"error": {"message": message, "code": status, "type": type(exc).__name__}})


def data_frame(event: BaseModel | bytes) -> bytes:
    """The frame of one event: a model, or the JSON of one already encoded. JSON has no raw line
    breaks (they are escaped in strings), so the event is one data line."""
    if isinstance(event, bytes):
        return b"data: " + event + b"\n\n"
    return b"data: " + event.__pydantic_serializer__.to_json(event) + b"\n\n"


class EventStreamResponse(Response):
    """A ``text/event-stream`` answer of ready-made frames."""

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[bytes], *, ping_interval_s: float = PING_INTERVAL_S) -> None:
        self.frames = frames
        self.status_code = 200
        self.background = None
        self.ping_interval_s = ping_interval_s
        self._started = False
        self._pinger: asyncio.Task[None] | None = None
        self.init_headers(_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(self._stream(send))
        watcher = asyncio.ensure_future(_client_gone(receive))
        if self.ping_interval_s > 0:
            self._pinger = asyncio.ensure_future(self._ping(send))
        try:
            await asyncio.wait((streaming, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            self._stop_pings()
            if not streaming.done():  # the client left (or the server is stopping): stop the work
                streaming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await streaming
        if not streaming.cancelled():
            streaming.result()  # a failure of the ASGI server's send: its own to report

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        self._started = True
        try:
            async for frame in self.frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        finally:
            closer = getattr(self.frames, "aclose", None)
            if closer is not None:
                await closer()
        self._stop_pings()  # a ping waiting to be written must not come after the last message
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _stop_pings(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None

    async def _ping(self, send: Send) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            if self._started:
                ping = f": ping - {datetime.now(UTC)}\n\n".encode()
                await send({"type": "http.response.body", "body": ping, "more_body": True})


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


T = TypeVar("T")


def sse_response(
    head: Iterable[BaseModel],
    source: AsyncIterator[T],
    convert: Callable[[T], Iterable[BaseModel | bytes]],
    *,
    done_marker: bool,
) -> EventStreamResponse:
    """Streams ``head`` events, then ``convert(item)`` for each item of ``source`` (models, or
    their JSON already encoded)."""

    async def frames() -> AsyncIterator[bytes]:
        try:
            for first in head:
                yield data_frame(first)
            async for item in source:
                for event in convert(item):
                    yield data_frame(event)
        except Exception as exc:
            yield b"data: " + error_frame(exc).encode() + b"\n\n"
            return
        finally:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                await closer()
        if done_marker:
            yield _DONE

    return EventStreamResponse(frames())


def typed_event_response(source: AsyncIterator[BaseModel]) -> EventStreamResponse:
    """Streams events that carry their own ``type`` as ``event: <type>`` plus the JSON (OpenAI's
    Responses stream); the source reports its own failures, and there is no ``[DONE]``."""

    async def frames() -> AsyncIterator[bytes]:
        try:
            async for event in source:
                kind = _LINE_BREAK.sub("", str(getattr(event, "type", "message")))
                yield b"event: " + kind.encode() + b"\n" + data_frame(event)
        finally:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                await closer()

    return EventStreamResponse(frames())


def wants_done_marker(request: Request) -> bool:
    """OpenAI streams end with ``data: [DONE]``, which OpenAI clients expect; llama-stack-client parses
    every event as JSON and fails on it (the reference server never sends it), so it does not get one."""
    return "LlamaStackClient/" not in request.headers.get("user-agent", "")


async def prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for item in rest:
        yield item
