"""Start-up: load the run config, build the stack, serve it with uvicorn on one event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path


def serve(config_path: Path, *, host: str | None, port: int | None, access_log: bool) -> int:
    started = time.perf_counter()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("llamastack")

    from ..config import load_run_config

    run_config = load_run_config(config_path)
    host = host or run_config.server.host
    port = port or run_config.server.port

    async def main() -> None:
        import uvicorn

        from ..resolver import build_stack
        from .app import create_app
        from .hosts import describe_exposure

        log.info(
            "Starting '%s' from %s (state in %s)", run_config.image_name, config_path, run_config.state_path
        )
        stack = await build_stack(run_config)
        for model in stack.models.table.list() if stack.models else []:
            log.info(
                "Serving %s model '%s' via %s", model.model_type.value, model.identifier, model.provider_id
            )
        app = create_app(stack, bind_host=host)
        config = uvicorn.Config(
            app, host=host, port=port, access_log=access_log, log_level="info", timeout_graceful_shutdown=5
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
