"""Start-up: load the run config, build the stack, serve it with uvicorn on one event loop."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import machine  # noqa: F401  (its clock of other processes' CPU starts now)
from ..library_imports import library_imports

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..config import ServerConfig


def _build_http_side(server: ServerConfig, host: str) -> FastAPI | None:
    """The application without its stack, and uvicorn imported; None if that failed (the main thread
    then builds it and reports the error). Its imports (FastAPI, every API's models) take turns with
    those of the providers and engines loading meanwhile (see library_imports.py)."""
    try:
        with library_imports:
            import uvicorn.lifespan.on  # noqa: F401

            from . import http_protocol  # noqa: F401  (uvicorn's httptools protocol)
            from .app import build_app

        return build_app(server, bind_host=host)
    except Exception:  # pragma: no cover - reported when the main thread does the same
        logging.getLogger("llamastack").debug("Building the HTTP side ahead failed", exc_info=True)
        return None


def serve(config_path: Path, *, host: str | None, port: int | None, access_log: bool) -> int:
    started = time.perf_counter()
    # httpx imports its command-line tool (rich, click, pygments) whenever they are installed; the
    # server never runs it, and importing it costs the start tens of milliseconds.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("llamastack")

    from ..config import load_run_config

    run_config = load_run_config(config_path)
    host = host or run_config.server.host
    port = port or run_config.server.port

    async def main() -> None:
        from ..resolver import build_stack

        log.info(
            "Starting '%s' from %s (state in %s)", run_config.image_name, config_path, run_config.state_path
        )
        # The HTTP side (FastAPI, every route, uvicorn) is built while the stack is: most of that time
        # the engines load in their own threads and this thread only waits.
        http_side = asyncio.create_task(asyncio.to_thread(_build_http_side, run_config.server, host))
        try:
            stack = await build_stack(run_config)
        finally:
            prepared = await http_side
        import uvicorn

        from .app import attach_stack, build_app
        from .hosts import describe_exposure
        from .http_protocol import GatheringHttpToolsProtocol

        for model in stack.models.table.list() if stack.models else []:
            log.info(
                "Serving %s model '%s' via %s", model.model_type.value, model.identifier, model.provider_id
            )
        app = prepared or build_app(run_config.server, bind_host=host)
        attach_stack(app, stack)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            access_log=access_log,
            log_level="info",
            timeout_graceful_shutdown=5,
            ws="none",  # no websocket routes: websockets need not load
            http=GatheringHttpToolsProtocol,  # an answer's head and body in one send
        )
        server = uvicorn.Server(config)
        auth = run_config.server.auth
        if auth.enabled:
            # Counts only: keys never appear in the log.
            log.info(
                "API keys required on every route but /v1/health: %d key(s), %d admin key(s)",
                len(auth.api_keys),
                len(auth.admin_keys),
            )
        where, warning = describe_exposure(host, port, auth_enabled=auth.enabled)
        if warning:
            log.warning(warning)
        log.info("Ready in %.2f s: %s", time.perf_counter() - started, where)
        await server.serve()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (as uvicorn itself picks it): every request and every streamed
    token goes through the loop, and uvloop's costs a fraction of asyncio's own per step."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
