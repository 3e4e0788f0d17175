"""API-key authentication as a pure ASGI middleware (it never buffers a response, so SSE streams
pass straight through).

With keys configured, every route except /v1/health needs ``Authorization: Bearer <key>``, which is
what llama-stack-client and the openai SDK send when given ``api_key``. Keys are compared as
sha256 digests with ``hmac.compare_digest`` against every configured key, so neither the time
taken nor an early exit tells which part or which key matched. The request then runs as the key's
principal (stack/access.py). Keys are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..access import Principal, acting_as, principal_id_for
from ..config import AuthConfig
from .envelope import error_body

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/v1/health"})  # for load balancers and start-up probes
_CLIENT_HINT = (
    "send 'Authorization: Bearer <API key>' (LlamaStackClient(api_key=...) and OpenAI(api_key=...) do)"
)


class APIKeyAuth:
    def __init__(self, app: ASGIApp, config: AuthConfig) -> None:
        self.app = app
        keys: dict[str, bool] = {k.get_secret_value(): False for k in config.api_keys}
        keys.update({k.get_secret_value(): True for k in config.admin_keys})  # admin wins if listed twice
        self._keys = [
            (hashlib.sha256(key.encode()).digest(), Principal(principal_id_for(key), admin))
            for key, admin in keys.items()
        ]

    def _identify(self, header: str | None) -> Principal | str:
        """The key's principal, or what is wrong with the request."""
        if not header:
            return f"This server requires an API key: {_CLIENT_HINT}."
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return f"The Authorization header must be 'Bearer <API key>': {_CLIENT_HINT}."
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for key_digest, principal in self._keys:  # no early exit: every key is compared
            if hmac.compare_digest(digest, key_digest):
                found = principal
        return found or "The API key is not valid for this server. Check it, or ask the operator for one."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        who = self._identify(header)
        if isinstance(who, Principal):
            with acting_as(who):
                await self.app(scope, receive, send)
            return
        client = scope.get("client")
        log.warning(
            "Refused %s %s from %s: %s",
            scope.get("method", "WEBSOCKET"),
            scope["path"],
            client[0] if client else "?",
            "no API key" if header is None else "wrong API key or scheme",
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = JSONResponse(
            error_body(scope["path"], 401, "Unauthorized", who),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
