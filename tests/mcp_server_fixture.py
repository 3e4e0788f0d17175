"""A small real MCP server for the tests, built on the `mcp` SDK's server side (`MCPServer`, which
was `FastMCP` before mcp 2).

Run it as a subprocess; it only ever binds the loopback interface:

    python tests/mcp_server_fixture.py --port 8765 --transport sse              # GET /sse
    python tests/mcp_server_fixture.py --port 8765 --transport streamable-http  # POST /mcp
    ... --require-header X-Api-Key=secret   # answer 401 to HTTP requests without that header
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json

import uvicorn
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import EmbeddedResource, TextResourceContents
from starlette.types import ASGIApp, Receive, Scope, Send

HOST = "127.0.0.1"  # loopback only, on purpose not configurable

# A 1x1 transparent PNG.
PIXEL_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABh6FO1AAAAABJRU5ErkJggg=="
)

server = MCPServer("llamastack-test-fixture")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str, times: int = 1) -> str:
    """Echo the text back, repeated `times` times."""
    return text * times


@server.tool()
def fail() -> str:
    """Always fails."""
    raise ToolError("this tool always fails")


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer 'awake'."""
    await asyncio.sleep(seconds)
    return "awake"


@server.tool()
def request_header(name: str, ctx: Context) -> str:
    """The value of one header of the HTTP request that carried this call ('' when absent)."""
    headers = ctx.headers or {}
    return headers.get(name.lower(), "")


@server.tool()
def pixel() -> Image:
    """A 1x1 PNG image."""
    return Image(data=base64.b64decode(PIXEL_PNG_B64), format="png")


@server.tool()
def document() -> EmbeddedResource:
    """An embedded text resource."""
    return EmbeddedResource(
        type="resource",
        resource=TextResourceContents(uri="memo://readme", text="embedded hello", mime_type="text/plain"),
    )


class RequireHeader:
    """Answers 401 to any HTTP request that lacks `name: value`."""

    def __init__(self, app: ASGIApp, name: str, value: str) -> None:
        self.app = app
        self.name = name.lower().encode()
        self.value = value.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (self.name, self.value) not in scope["headers"]:
            body = json.dumps({"error": "unauthorized"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(body)),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=("sse", "streamable-http"), default="streamable-http")
    parser.add_argument("--require-header", metavar="NAME=VALUE", default=None)
    args = parser.parse_args()
    app: ASGIApp = (
        server.sse_app(host=HOST) if args.transport == "sse" else server.streamable_http_app(host=HOST)
    )
    if args.require_header:
        name, _, value = args.require_header.partition("=")
        app = RequireHeader(app, name, value)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
