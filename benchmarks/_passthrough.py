"""The floor for bench_remote.py: uvicorn (httptools, uvloop) and the stack's engine client and
nothing else, relaying each chat completion body to the engine and its answer back.

    python benchmarks/_passthrough.py PORT ENGINE_URL
"""

from __future__ import annotations

import json
import sys
from typing import Any

from llamastack.providers.inference.remote.openai_compat import transport
from llamastack.stack.server.http_protocol import GatheringHttpToolsProtocol


def make_app(engine_url: str) -> Any:
    client = transport.EngineClient(engine_url, {}, timeout_s=120, connect_timeout_s=5)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":  # the health check
            answer: Any = {"status": "OK"}
        else:
            answer = await client.post_json("chat/completions", json.loads(body), {})
        data = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    return app


if __name__ == "__main__":
    import uvicorn

    port, engine = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(
        make_app(engine),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        loop="uvloop",
        http=GatheringHttpToolsProtocol,
    )
