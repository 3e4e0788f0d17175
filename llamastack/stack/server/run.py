"""Start-up: load the run config, build the stack, serve it with uvicorn on one event loop."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path


def _import_http_side() -> None:
    """Imports what serving needs beyond the stack; any failure shows when it is imported again."""
    try:
        import uvicorn.lifespan.on
        import uvicorn.protocols.http.auto  # noqa: F401

        from . import app  # noqa: F401
    except Exception:  # pragma: no cover - reported by the import that follows in the main thread
        logging.getLogger("llamastack").debug("Importing the HTTP side ahead failed", exc_info=True)


def serve(config_path: Path, *, host: str | None, port: int | None, access_log: bool) -> int:
    started = time.perf_counter()
    # httpx imports its command-line tool (rich, click, pygments) whenever they are installed; the
    # server never runs it, and it is a tenth of the start's imports.
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
        # The HTTP side (FastAPI, every route, uvicorn) is imported while the stack is built: most of
        # that time the engines load in their own threads and this thread only waits.
        http_side = asyncio.create_task(asyncio.to_thread(_import_http_side))
        try:
            stack = await build_stack(run_config)
        finally:
            await http_side
        import uvicorn

        from .app import create_app
        from .hosts import describe_exposure

        for model in stack.models.table.list() if stack.models else []:
            log.info(
                "Serving %s model '%s' via %s", model.model_type.value, model.identifier, model.provider_id
            )
        app = create_app(stack, bind_host=host)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            access_log=access_log,
            log_level="info",
            timeout_graceful_shutdown=5,
            ws="none",  # no websocket routes: websockets need not load
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

    asyncio.run(main())
    return 0
