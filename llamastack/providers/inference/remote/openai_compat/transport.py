"""HTTP to the engine: one pooled aiohttp session, JSON in and out, OpenAI-style SSE streams.

aiohttp rather than httpx or the openai SDK because this sits on every request's path: in front
of a local engine, httpx costs about 1.2 ms of CPU per request and aiohttp (C-accelerated parsing)
about 0.25 ms, and the SDK adds its own request transforms and response models on top. What the
adapter needs is small (POST JSON, read JSON or SSE lines), so nothing else of a client is missed.

Failures are ours to read: `failure` turns aiohttp's exceptions into the stack's `Failure`
(connect, timeout, transport), and an HTTP error answer raises `EngineStatusError`, whose
``response`` carries status, headers and body the way the Boundary reads any library's.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from llamastack.stack.boundary import Failure

Headers = dict[str, str]
_READ_BUFFER = 2**20  # also the longest SSE line (an event with large tool arguments or logprobs)
# Below the idle timeout of uvicorn-based engines (5 s: vLLM, llama_cpp.server), so a pooled
# connection is never one the engine has just closed.
_KEEPALIVE_S = 4.0
_DONE: Any = object()  # an event stream's `data: [DONE]`
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _proxied() -> bool:
    """Whether the environment names a proxy. aiohttp's trust_env also reads ~/.netrc in a worker
    thread on every request, so it is turned on only when there is a proxy to honour."""
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


@dataclass(frozen=True, slots=True)
class EngineAnswer:
    """An engine's HTTP error answer, shaped as the Boundary reads responses."""

    status_code: int
    headers: Mapping[str, str]
    text: str


class EngineStatusError(Exception):
    def __init__(self, response: EngineAnswer) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class EngineStreamError(Exception):
    """The engine reported an error inside a stream it had started (an SSE event with "error")."""


def failure(exc: BaseException) -> Failure | None:
    """What an aiohttp exception stands for; None for others (the Boundary reads those)."""
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return Failure("timeout", f"{type(exc).__name__}: no answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):  # nothing reached the engine
        return Failure("connect", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return Failure("transport", f"{type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, EngineStreamError):
        return Failure("other", f"the engine ended the stream with: {exc}")
    return None


class EngineClient:
    """One engine's base URL, default headers and connection pool; created on first use (aiohttp
    sessions belong to the running event loop)."""

    def __init__(
        self, base_url: str, headers: Headers, *, timeout_s: float, connect_timeout_s: float
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        # sock_read: the longest wait for the next bytes of an answer (or the next token of a stream).
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                timeout=self.timeout,
                connector=aiohttp.TCPConnector(keepalive_timeout=_KEEPALIVE_S),
                read_bufsize=_READ_BUFFER,
                trust_env=_proxied(),  # HTTP(S)_PROXY / NO_PROXY, as other HTTP clients honour them
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, path: str, headers: Headers, timeout_s: float | None = None) -> Any:
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=self.timeout.connect) if timeout_s else None
        async with self._open().get(f"{self.base_url}/{path}", headers=headers, timeout=timeout) as r:
            return await _json(r)

    async def post_json(self, path: str, body: dict[str, Any], headers: Headers) -> Any:
        async with self._open().post(f"{self.base_url}/{path}", json=body, headers=headers) as r:
            return await _json(r)

    async def open_stream(self, path: str, body: dict[str, Any], headers: Headers) -> EngineStream:
        response = await self._open().post(f"{self.base_url}/{path}", json=body, headers=headers)
        if response.status >= 400:
            try:
                raise EngineStatusError(await _answer(response))
            finally:
                response.release()
        return EngineStream(response)


class EngineStream:
    """An open OpenAI-style SSE answer; `close` drops the connection unless the stream ended."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._ended = False

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The JSON events up to ``data: [DONE]``. These engines send each event on one ``data:``
        line; comments and other fields are skipped. Reads whatever has arrived and splits it into
        lines here: one wake-up per network read, however many events it holds."""
        partial = b""
        async for data in self._response.content.iter_any():
            lines = (partial + data).splitlines() if partial else data.splitlines()
            # The last line goes on in the next read unless the data ends a line (a CR ending
            # one read and its LF starting the next only adds a blank line, which is skipped).
            partial = b"" if data.endswith((b"\n", b"\r")) else lines.pop() if lines else b""
            if len(partial) > _READ_BUFFER:
                raise EngineStreamError(f"an event longer than {_READ_BUFFER} bytes")
            for line in lines:
                event = self._event(line)
                if event is _DONE:
                    self._ended = True
                    return
                if event is not None:
                    yield event
        if partial and (event := self._event(partial)) is not None:
            if event is _DONE:
                self._ended = True
                return
            yield event
        self._ended = True

    @staticmethod
    def _event(line: bytes) -> Any:
        if not line.startswith(b"data:"):
            return None
        data = line[5:].strip()
        if data == b"[DONE]":
            return _DONE
        if not data:
            return None
        event = json.loads(data)
        if not isinstance(event, dict):
            raise EngineStreamError(
                f"an event that is not a JSON object: {data[:200].decode('utf-8', 'replace')}"
            )
        if event.get("error"):
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise EngineStreamError(" ".join(str(message)[:200].split()))
        return event

    def close(self) -> None:
        # Closing (not releasing) a stream cut short ends the connection, which stops the generation.
        if self._ended:
            self._response.release()
        else:
            self._response.close()


async def _answer(response: aiohttp.ClientResponse) -> EngineAnswer:
    text = (await response.read()).decode("utf-8", "replace")
    return EngineAnswer(response.status, response.headers, text)


async def _json(response: aiohttp.ClientResponse) -> Any:
    if response.status >= 400:
        raise EngineStatusError(await _answer(response))
    return json.loads(await response.read())
