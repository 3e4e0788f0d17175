"""Where the server listens, and which Host headers it answers (a DNS-rebinding defence).

A page on any web site can make a browser send requests to 127.0.0.1 by pointing a name it
controls at that address; such requests carry the attacker's name in Host. So when the server is
bound to loopback it answers only for loopback names (and ``server.allowed_hosts``), whatever the
port. When it is exposed, the check applies only if ``allowed_hosts`` is set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .envelope import error_body

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server reachable from this machine only."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname or an interface address: reachable from elsewhere


def split_host(value: str) -> tuple[str, str | None]:
    """'[::1]:8321' -> ('::1', '8321'); 'Example.com' -> ('example.com', None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    if value.count(":") == 1:
        name, port = value.split(":")
        return name, port
    return value, None


class HostHeaderGuard:
    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        allowed = list(allowed)
        self.any = "*" in allowed
        # Names are matched on any port: the port a proxy forwards to may differ from the bound one.
        self.allowed = {split_host(a)[0] for a in allowed} | LOOPBACK_NAMES
        self.names = sorted(a for a in allowed if a != "*")

    def _accepts(self, host: str) -> bool:
        name, port = split_host(host)
        return self.any or (name in self.allowed and (port is None or port.isdigit()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if host is None or self._accepts(host):  # no Host at all is not a browser's request
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        served = ", ".join(["localhost", "127.0.0.1", "[::1]", *self.names])
        detail = (
            f"Host '{host[:100]}' is not served here: this server answers for {served}. "
            "To reach it under another name, add the name to server.allowed_hosts."
        )
        response = JSONResponse(
            error_body(scope["path"], 421, "Misdirected Request", detail), status_code=421
        )
        await response(scope, receive, send)


def describe_exposure(host: str, port: int, *, auth_enabled: bool) -> tuple[str, str | None]:
    """What the start-up line says about the bind address, and a warning when it is unsafe."""
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    if is_loopback(host):
        return f"{url} (loopback only; --host 0.0.0.0 exposes it to other machines)", None
    where = "on every interface" if host in ("0.0.0.0", "::", "") else f"on {host}"
    if auth_enabled:
        return f"{url} (exposed beyond loopback {where}; API keys required)", None
    warning = (
        f"The server is exposed beyond loopback {where} without API keys: anyone who can reach port "
        f"{port} can use every API and read every file, agent and vector store. Set "
        "LLAMA_STACK_API_KEYS (server.auth.api_keys in the run config), or bind to 127.0.0.1."
    )
    return f"{url} (exposed beyond loopback {where}; no API keys)", warning
