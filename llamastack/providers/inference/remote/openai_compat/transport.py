"""HTTP to the engine: JSON in and out, OpenAI-style SSE streams, failures as the stack's.

Plain ``http://`` engines (vLLM, llama.cpp's servers, Ollama, TGI on the machine or the LAN) go
through `http1`, a small keep-alive HTTP/1.1 client on httptools: this sits on every request's
path, and in front of a local engine the client is most of the CPU the server spends per request
(back to back against a trivial loopback server, JSON included: httpx about 1.2 ms, aiohttp
0.34 ms, `http1` 0.18 ms). HTTPS
engines (the hosted APIs) and any engine behind a proxy (HTTP(S)_PROXY set) go through one pooled
aiohttp session, which does TLS and proxies; the network time there dwarfs the client's.

Failures are ours to read: `failure` turns either client's exceptions into the stack's `Failure`
(connect, timeout, transport), and an HTTP error answer raises `EngineStatusError`, whose
``response`` carries status, headers and body the way the Boundary reads any library's.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llamastack.stack.boundary import Failure
from llamastack.stack.library_imports import libraries_imported
from llamastack.stack.version import __version__

from . import http1

if TYPE_CHECKING:
    import aiohttp

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
    """What a client's exception stands for; None for others (the Boundary reads those)."""
    if isinstance(exc, http1.ConnectError):  # nothing reached the engine
        return Failure("connect", str(exc))
    if isinstance(exc, http1.Busy):  # as the engine's own 503; not retried: it has waited already
        return Failure("status", str(exc), status=503, retry_after_s=1)
    if isinstance(exc, http1.ReadTimeout):
        return Failure("timeout", f"{type(exc).__name__}: no answer in time")
    if isinstance(exc, http1.Disconnected):
        return Failure("transport", str(exc))
    if isinstance(exc, EngineStreamError):
        return Failure("other", f"the engine ended the stream with: {exc}")
    aiohttp = sys.modules.get("aiohttp")  # loaded only for HTTPS or proxied engines
    if aiohttp is None:
        return None
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return Failure("timeout", f"{type(exc).__name__}: no answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):  # nothing reached the engine
        return Failure("connect", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return Failure("transport", f"{type(exc).__name__}: {exc}".rstrip(": "))
    return None


class EngineClient:
    """One engine's base URL, default headers and connections: `http1` for plain http://, else an
    aiohttp session created on first use (aiohttp sessions belong to the running event loop)."""

    def __init__(
        self,
        base_url: str,
        headers: Headers,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self._pool: http1.Pool | None = None
        if self.base_url.startswith("http://") and not _proxied():
            self._pool = http1.Pool(
                self.base_url,
                headers,
                timeout_s=timeout_s,
                connect_timeout_s=connect_timeout_s,
                keepalive_s=_KEEPALIVE_S,
                user_agent=f"llamastack/{__version__}",
                max_connections=max_connections,
            )
        self._session: aiohttp.ClientSession | None = None

    async def _opened(self) -> aiohttp.ClientSession:
        await libraries_imported("aiohttp")  # its first import, in a thread (see library_imports)
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                # sock_read: the longest wait for the next bytes of an answer (or the next token).
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.connect_timeout_s, sock_read=self.timeout_s
                ),
                connector=aiohttp.TCPConnector(keepalive_timeout=_KEEPALIVE_S, limit=self.max_connections),
                read_bufsize=_READ_BUFFER,
                trust_env=_proxied(),  # HTTP(S)_PROXY / NO_PROXY, as other HTTP clients honour them
            )
        return self._session

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, path: str, headers: Headers, timeout_s: float | None = None) -> Any:
        if self._pool is not None:
            answer = await self._pool.request("GET", path, headers, timeout_s=timeout_s)
            return _decoded(answer.status, answer.headers, await answer.read())
        session = await self._opened()
        import aiohttp

        timeout = None
        if timeout_s:
            timeout = aiohttp.ClientTimeout(total=timeout_s, connect=self.connect_timeout_s)
        async with session.get(f"{self.base_url}/{path}", headers=headers, timeout=timeout) as r:
            return _decoded(r.status, r.headers, await r.read())

    async def post_json(self, path: str, body: dict[str, Any], headers: Headers) -> Any:
        data = _encoded(body)
        if self._pool is not None:
            answer = await self._pool.request("POST", path, headers, data)
            return _decoded(answer.status, answer.headers, await answer.read())
        session = await self._opened()
        async with session.post(f"{self.base_url}/{path}", data=data, headers=_json(headers)) as r:
            return _decoded(r.status, r.headers, await r.read())

    async def open_stream(self, path: str, body: dict[str, Any], headers: Headers) -> EngineStream:
        data = _encoded(body)
        if self._pool is not None:
            answer = await self._pool.request("POST", path, headers, data)
            if answer.status >= 400:
                raise EngineStatusError(_error_answer(answer.status, answer.headers, await answer.read()))
            return EngineStream(answer.chunks(), answer.release, answer.close)
        session = await self._opened()
        response = await session.post(f"{self.base_url}/{path}", data=data, headers=_json(headers))
        if response.status >= 400:
            try:
                text = await response.read()
                raise EngineStatusError(_error_answer(response.status, response.headers, text))
            finally:
                response.release()
        return EngineStream(response.content.iter_any(), response.release, response.close)


class EngineStream:
    """An open OpenAI-style SSE answer; `close` drops the connection unless the stream ended."""

    def __init__(
        self, chunks: AsyncIterator[bytes], release: Callable[[], None], drop: Callable[[], None]
    ) -> None:
        self._chunks = chunks
        self._release = release
        self._drop = drop
        self._ended = False

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The JSON events up to ``data: [DONE]``. These engines send each event on one ``data:``
        line; comments and other fields are skipped. Reads whatever has arrived and splits it into
        lines here: one wake-up per network read, however many events it holds."""
        partial = b""
        async for data in self._chunks:
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
            self._release()
        else:
            self._drop()


def _encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _json(headers: Headers) -> Headers:
    return {**headers, "Content-Type": "application/json"}


def _error_answer(status: int, headers: Mapping[str, str], body: bytes) -> EngineAnswer:
    return EngineAnswer(status, headers, body.decode("utf-8", "replace"))


def _decoded(status: int, headers: Mapping[str, str], body: bytes) -> Any:
    if status >= 400:
        raise EngineStatusError(_error_answer(status, headers, body))
    return json.loads(body)
