"""The FastAPI application: routers, the one error-to-status map, and the stack's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from inspect import signature
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..config import ServerConfig
from ..datatypes import Api
from ..errors import StackError
from ..resolver import Stack
from ..version import __version__
from .activity import Activity, ActivityCounter
from .auth import APIKeyAuth
from .direct import DirectRoutes
from .envelope import error_body
from .hosts import HostHeaderGuard, is_loopback
from .openapi import install_openapi
from .routes import (
    agents,
    files,
    inference,
    inspect,
    models,
    responses,
    safety,
    tools,
    vector_io,
    vector_stores,
)

log = logging.getLogger(__name__)

# Which API each route prefix belongs to, for /v1/inspect/routes.
_ROUTE_APIS = (
    ("/v1/inference/", Api.inference),
    ("/v1/openai/v1/chat/", Api.inference),
    ("/v1/openai/v1/completions", Api.inference),
    ("/v1/openai/v1/embeddings", Api.inference),
    ("/v1/openai/v1/responses", Api.inference),
    ("/v1/safety/", Api.safety),
    ("/v1/shields", Api.safety),
    ("/v1/vector-dbs", Api.vector_io),
    ("/v1/vector-io/", Api.vector_io),
    ("/v1/tool-runtime/", Api.tool_runtime),
    ("/v1/toolgroups", Api.tool_runtime),
    ("/v1/tools", Api.tool_runtime),
    ("/v1/agents", Api.agents),
    ("/v1/openai/v1/vector_stores", Api.vector_io),
    ("/v1/openai/v1/files", Api.files),
)


def _error(
    request: Request, status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(request.url.path, status, title, detail), status_code=status, headers=headers
    )


def _describe_validation(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            return f"Request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}."
        where = ".".join(loc) or "body"
        problems.append(f"'{where}': {err.get('msg')}")
    return "Invalid request: " + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")


_STATUS_CODES = {s.value for s in HTTPStatus}


def _allowed_methods(request: Request) -> str:
    """Every method of every route on this path: Starlette's 405 names only the first route's."""
    methods: set[str] = set()
    for route in _flat_routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods - {"HEAD"}))


def _flat_routes(routes: Iterable[object]) -> Iterator[APIRoute]:
    # FastAPI keeps an included router as one entry holding the router's own routes.
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _flat_routes(included.routes)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StackError)
    async def stack_error(request: Request, exc: StackError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%s: %s", type(exc).__name__, exc.detail)
        return _error(request, exc.status_code, exc.title, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(request, 400, "Bad Request", _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in _STATUS_CODES else "Error"
        return _error(request, exc.status_code, title, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Unhandled error", exc_info=exc)
        return _error(
            request,
            500,
            "Internal Server Error",
            f"Internal server error ({type(exc).__name__}); see the server log.",
        )


def install_edges(app: FastAPI, server: ServerConfig, bind_host: str | None) -> None:
    """API keys, CORS and the Host check. Outermost first: Host check, CORS (so preflights, which
    carry no credentials, are answered, and a 401 still carries CORS headers), API keys."""
    from starlette.middleware.cors import CORSMiddleware

    from ..provider_data import ProviderDataMiddleware

    # Innermost: the generation routes' direct way in (every other request passes through).
    app.add_middleware(
        DirectRoutes,
        routes=inference.DIRECT_ROUTES,
        before=_sync_registries,
        exception_handlers=app.exception_handlers,
    )
    app.add_middleware(ProviderDataMiddleware)  # per-request keys for providers
    if server.auth.enabled:
        app.add_middleware(APIKeyAuth, config=server.auth)
    cors = server.cors
    if cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.allow_origins,
            allow_methods=cors.allow_methods,
            allow_headers=cors.allow_headers,
            allow_credentials=cors.allow_credentials,
            max_age=cors.max_age,
        )
    if bind_host is not None and (is_loopback(bind_host) or server.allowed_hosts):
        app.add_middleware(HostHeaderGuard, allowed=server.allowed_hosts)


async def _sync_registries(request: Request) -> None:
    """Before every request: what other replicas on the same database registered is served here too."""
    stack = request.app.state.stack
    if stack is not None:
        await stack.sync_registries()


_ROUTERS: tuple[APIRouter, ...] = (
    inspect.router,
    inspect.providers_router,
    models.router,
    inference.router,
    responses.router,
    safety.router,
    vector_io.router,
    vector_stores.router,
    tools.router,
    agents.router,
    files.router,
)

# The providers' deferred start-up work waits this long after the server is up, then for a moment
# without requests (see activity.py): the first requests (a client's health check, its first chats or
# embeddings) are answered before it competes with them. A server that is never quiet warms up anyway.
WARM_UP_AFTER_S = 1.0
WARM_UP_QUIET_S = 0.5
WARM_UP_AT_MOST_S = 30.0


async def _warm_up_later(stack: Stack, activity: Activity) -> None:
    await asyncio.sleep(WARM_UP_AFTER_S)
    await activity.quiet(WARM_UP_QUIET_S, WARM_UP_AT_MOST_S)
    await stack.warm_up()


def create_app(stack: Stack | None = None, *, bind_host: str | None = None) -> FastAPI:
    """With a stack, the app serves it; without, the app describes the API (OpenAPI export, tests).
    ``bind_host`` is the address the server listens on; it turns on the Host header check."""
    app = build_app(stack.run_config.server if stack is not None else None, bind_host=bind_host)
    if stack is not None:
        attach_stack(app, stack)
    return app


def _fastapi_telemetry() -> dict[str, Any]:
    """FastAPI (0.165 and later) traces requests itself once an OpenTelemetry SDK is set up, and asks
    on every request whether one is. Without OpenTelemetry settings in the environment (OTEL_*, as
    `opentelemetry-instrument` and the SDK read them, or FASTAPI_OTEL_AUTO_CONFIGURE) it is off
    from the start, so requests do not pay for the question."""
    if "telemetry" not in signature(FastAPI.__init__).parameters:
        return {}
    if any(name.startswith(("OTEL_", "FASTAPI_OTEL_")) for name in os.environ):
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def build_app(server: ServerConfig | None = None, *, bind_host: str | None = None) -> FastAPI:
    """The application before its stack exists: every route, the error map and, with ``server``, the
    edges (API keys, CORS, the Host check). The server builds it while the engines load, then gives it
    the stack (``attach_stack``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stack, activity = app.state.stack, app.state.activity
        warming = asyncio.create_task(_warm_up_later(stack, activity)) if stack is not None else None
        yield
        if warming is not None and not warming.done():
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warming
        if stack is not None:
            await stack.shutdown()

    app = FastAPI(
        title="Llama Stack Specification",
        version=__version__,
        description="Llama Stack v0.2.12 API and OpenAI-compatible routes, served by llamastack.",
        lifespan=lifespan,
        dependencies=[Depends(_sync_registries)],
        **_fastapi_telemetry(),
    )
    app.state.stack = None
    app.state.started_at = int(time.time())
    app.state.activity = Activity()
    for module_router in _ROUTERS:
        app.include_router(module_router)
    install_error_handlers(app)
    install_openapi(app)
    if server is not None:
        install_edges(app, server, bind_host)
    app.add_middleware(ActivityCounter, activity=app.state.activity)  # outermost: every request counts
    app.state.api_routes = _api_routes(_ROUTERS, None)
    _prepare_routing(app)
    return app


def attach_stack(app: FastAPI, stack: Stack) -> None:
    """The stack the app serves (before the server starts)."""
    app.state.stack = stack
    app.state.started_at = int(time.time())
    app.state.api_routes = _api_routes(_ROUTERS, stack)


def _prepare_routing(app: FastAPI) -> None:
    """Recent FastAPI versions prepare each included route (its dependencies and response fields) when
    a request is first matched against it: tens of milliseconds that would fall on the first requests
    after start. One request for a path no route has, straight to the router, prepares all of them; so
    is the middleware stack, which Starlette builds at the first request."""
    app.middleware_stack = app.build_middleware_stack()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/-",
        "raw_path": b"/-",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("127.0.0.1", 0),
        "client": ("127.0.0.1", 0),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    walk = app.router(scope, receive, send)  # runs to its 404 without waiting on anything
    try:
        walk.send(None)
    except StopIteration:
        return
    except Exception:  # an optimisation only: routes are prepared at their first request instead
        log.debug("Preparing the routes ahead failed", exc_info=True)
    walk.close()


def _api_routes(routers: tuple[APIRouter, ...], stack: Stack | None) -> list[tuple[str, str, list[str]]]:
    """(path, method, provider types) for every API route, for /v1/inspect/routes."""
    out: list[tuple[str, str, list[str]]] = []
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            path = route.path_format
            providers: list[str] = []
            for prefix, api in _ROUTE_APIS:
                if stack is not None and path.startswith(prefix):
                    providers = sorted({p.spec.provider_type for p in stack.providers.get(api, {}).values()})
            methods = sorted((route.methods or set()) - {"HEAD", "OPTIONS"})
            out.extend((path, method, providers) for method in methods)
    return out
