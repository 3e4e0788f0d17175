"""The route class every API route uses: strict JSON bodies, and work cancelled when the client leaves.

- JSON bodies are parsed strictly: ``NaN``/``Infinity`` (not JSON, but Python's parser takes them)
  and lone UTF-16 surrogates (``"\\ud800"``: valid JSON escapes that no UTF-8 string can hold, so
  every tokenizer, encoder and database downstream would fail on them) are a 400 naming where they
  are, before any handler sees the body.
- A client that disconnects before its response has started cancels the handler of a route that
  only computes an answer (inference, agent turns, queries; a generation waiting in or running on
  the model's queue stops): Starlette does not do this by itself, so a departed client would
  otherwise hold the model until its request finished. Streaming responses watch for the
  disconnect themselves once they start. Writes run to completion.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number; send a finite number or null")


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The location of the first string holding a lone surrogate, or None."""
    if isinstance(value, str):
        return path if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                return f"{path} (a key)"
            found = _lone_surrogate(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{i}]")
            if found:
                return found
    return None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                parsed = json.loads(body, parse_constant=_reject_constant)
            except ValueError as exc:
                if isinstance(exc, json.JSONDecodeError):
                    raise
                text = body.decode("utf-8", "replace")
                raise json.JSONDecodeError(str(exc), text, 0) from None
            # Only \u escapes can smuggle a lone surrogate in; most bodies have none.
            if b"\\u" in body and (where := _lone_surrogate(parsed, "body")) is not None:
                raise json.JSONDecodeError(
                    f"{where} contains an unpaired UTF-16 surrogate escape (like \\ud800), which is "
                    "not a character; send valid Unicode text",
                    body.decode("utf-8", "replace"),
                    0,
                )
            self._json = parsed
        return self._json


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, Response]) -> Response:
    # The whole body is read first, so from here on receive() only reports the disconnect. The work
    # runs in this task; the watcher cancels it when the client leaves (as asyncio.timeout does).
    await request.body()
    current = asyncio.current_task()
    assert current is not None
    gone = False

    def on_disconnect(watcher: asyncio.Task[None]) -> None:
        nonlocal gone
        if not watcher.cancelled() and watcher.exception() is None:
            gone = True
            current.cancel()

    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    watcher.add_done_callback(on_disconnect)
    try:
        return await work
    except BaseException as exc:
        if not gone:
            raise
        # Cancelled for the disconnect (or failing on the way out): the answer has no one to go to.
        if current.uncancel() > 0 and isinstance(exc, asyncio.CancelledError):
            raise  # cancelled from outside as well
        return Response(status_code=499)  # never delivered: the client is gone
    finally:
        watcher.remove_done_callback(on_disconnect)
        watcher.cancel()


def _reads_body_itself(request: Request) -> bool:
    # Streamed uploads (multipart) are read by the handler chunk by chunk; never buffer them.
    return request.headers.get("content-type", "").lower().startswith("multipart/")


# Work that only produces an answer for the caller: when the caller is gone, it is wasted. Writes
# (inserts, attaches, uploads, registrations) run to completion instead, so a client that times out
# does not leave half of what it asked for.
_ANSWER_ONLY = (
    "/v1/inference/",
    "/v1/openai/v1/chat/completions",
    "/v1/openai/v1/completions",
    "/v1/openai/v1/embeddings",
    "/v1/safety/run-shield",
    "/v1/tool-runtime/invoke",
    "/v1/tool-runtime/rag-tool/query",
    "/v1/vector-io/query",
)


def answer_only(path: str) -> bool:
    # Agent turns too: a dropped turn should stop its generation, as a dropped chat does.
    return path.startswith(_ANSWER_ONLY) or path.endswith(("/turn", "/resume", "/search"))


class StackRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        cancellable = answer_only(self.path)

        async def route_handler(request: Request) -> Response:
            request = StrictJSONRequest(request.scope, request.receive, request._send)
            if not cancellable or _reads_body_itself(request):
                return await handler(request)
            return await cancel_on_disconnect(request, handler(request))

        return route_handler
