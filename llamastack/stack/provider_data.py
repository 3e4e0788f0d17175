"""Per-request provider settings from the ``X-LlamaStack-Provider-Data`` header (a JSON object, e.g.
``{"together_api_key": "..."}``), readable by any provider a request reaches, however deep (an
agent turn's inference), without every Protocol carrying it.

The middleware only keeps the raw header for the request; ``current()`` parses it when a provider
asks, so a malformed header fails only the requests that use it, with a 400 saying what is wrong.
The values are credentials: never log them.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import BadRequestError

HEADER = "X-LlamaStack-Provider-Data"
_HEADER_BYTES = HEADER.lower().encode()
_raw: ContextVar[str | None] = ContextVar("llamastack_provider_data", default=None)


def current() -> dict[str, Any]:
    """This request's provider data; empty when it sent none."""
    raw = _raw.get()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"{HEADER} must be a JSON object: {exc}.") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"{HEADER} must be a JSON object.")
    return data


def string_value(name: str) -> str | None:
    """One string setting of this request's provider data (e.g. an API key), or None."""
    value = current().get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"{HEADER}: '{name}' must be a non-empty string.")
    return value


class ProviderDataMiddleware:
    """Pure ASGI: keeps the request's header for ``current()`` while the request (and its stream) runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", ()) if k == _HEADER_BYTES), None)
        token = _raw.set(raw.decode("latin-1") if raw is not None else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _raw.reset(token)
