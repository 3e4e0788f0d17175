"""A direct way in for the generation routes, which every chat and completion request takes.

FastAPI's routing and request handling (the included routers' matching, the dependency solver, its
exit stacks and middlewares) cost more CPU per request than everything else the server does in front
of a remote engine. This pure ASGI middleware, innermost of the edges (inside the Host check, CORS,
API keys and the provider-data context), takes a ``POST`` to one of these routes with a JSON body
that parses strictly and validates, and calls the route function itself: the same function, the
same pre-request sync, the same cancellation when the client leaves, and the app's own exception
handlers for what it raises. Anything else (another method or content type, a body that does not
parse or validate) goes the usual way with its body replayed, so every error answer is FastAPI's.
The routes are still declared on their routers: the OpenAPI document and /v1/inspect/routes are
unchanged.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .route import StrictJSONRequest, answer_only, cancel_on_disconnect

Endpoint = Callable[[Request, Any], Awaitable[Response]]
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class DirectRoutes:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, tuple[type[BaseModel], Endpoint]],
        before: Callable[[Request], Awaitable[None]],
        exception_handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        for path in routes:
            assert answer_only(path), f"{path}: only routes that compute an answer are dispatched directly"
        self.routes = dict(routes)
        self.before = before
        # The app's handlers as its ExceptionMiddleware uses them; the catch-all one (500) stays
        # with the outermost ServerErrorMiddleware, which an unexpected failure still reaches.
        self.handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST" or scope.get("root_path") or not _json_body(scope):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        body = b""
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        model, endpoint = route
        request = StrictJSONRequest(scope, receive, send)
        request._body = body  # what Request.body() returns
        try:
            if received[-1]["type"] != "http.request":
                raise ValueError("the client left while sending the body")
            parsed = model.model_validate(await request.json())
        except (ValueError, ValidationError):  # JSON errors are ValueErrors: answered the usual way
            await self.app(scope, _replay(received, receive), send)
            return

        async def work() -> Response:
            await self.before(request)
            return await endpoint(request, parsed)

        try:
            response = await cancel_on_disconnect(request, work())
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        for kind in type(exc).__mro__:
            if kind is Exception:
                return None
            if kind in self.handlers:
                return self.handlers[kind]
        return None


def _json_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


def _replay(received: list[Message], receive: Receive) -> Receive:
    pending = deque(received)

    async def replayed() -> Message:
        return pending.popleft() if pending else await receive()

    return replayed
