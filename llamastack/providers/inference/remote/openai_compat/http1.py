"""HTTP/1.1 to an engine over plain TCP: pooled keep-alive connections, httptools' parser, no more.

Every request to a remote engine goes through here, so its cost is the server's added latency:
aiohttp's request machinery (its connector, timers, payload writers and stream readers) is most of
the CPU the server spends per request in front of a local engine, and a cold CPU (one woken from
waiting on the engine) multiplies it. What an OpenAI-style engine needs is small: POST or GET with
a JSON body, a status and headers, a body read whole or as it arrives. Hand-written on httptools
(the C parser uvicorn uses, already a dependency) for that; TLS and proxies stay with aiohttp
(`transport` picks), where a hosted API's network time dwarfs the client's.

Semantics kept from the client it replaces: a connect timeout, a read timeout as the longest wait
for the next bytes (so a stream may run long), idle connections kept `keepalive_s` (below the
engines' own idle timeout), and a connection dropped instead of reused whenever an answer was not
read to its end (closing it is what stops an engine's generation).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 2**20  # stop reading from the socket while this much body is waiting to be consumed
_LOW_WATER = 2**18


class ConnectError(ConnectionError):
    """The engine could not be reached: nothing was sent."""


class ReadTimeout(TimeoutError):
    """The engine sent nothing for `timeout_s`."""


class Busy(Exception):
    """Every connection the pool may open stayed in use for as long as the request could wait."""


class Disconnected(ConnectionError):
    """The connection ended (or carried something other than HTTP) before the answer did."""


def _header_lines(headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name} holds a line break or NUL")
        lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
    return b"".join(lines)


class _Connection(asyncio.Protocol):
    """One TCP connection; one request at a time, its answer parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.when_complete: Callable[[], None] | None = None  # set while a released answer finishes
        self._on_gone: Callable[[], None] | None = None
        self._begin()

    def _begin(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.streaming = False
        self.paused = False
        self.keep_alive = False
        self.received = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._head_done = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a request leaves in one segment, now
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.received = True
        self._last_data = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Disconnected(f"the engine answered something other than HTTP/1.1: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._gone()
        if not self.complete:
            reason = f": {exc}" if exc else ""
            self._fail(Disconnected(f"the engine closed the connection before the answer ended{reason}"))

    def pause_writing(self) -> None:  # a request body larger than the socket buffer: written anyway
        pass

    def resume_writing(self) -> None:
        pass

    # --- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self._head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(bytes(body))
        self.buffered += len(body)
        # A stream read slower than it arrives stops the socket (a body read whole is wanted whole).
        if self.streaming and self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # the parser forgets it once the message ends
        self.complete = True
        self._cancel_timer()
        self._wake()
        if (then := self.when_complete) is not None:
            self.when_complete = None
            then()

    # --- the request's side -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self._begin()
        self._last_data = self.loop.time()
        self._timer = self.loop.call_at(self._last_data + self.timeout_s, self._check_timeout)
        self.transport.write(data)

    async def head(self) -> None:
        while not self._head_done:
            await self._wait()

    async def chunk(self) -> bytes | None:
        """The next piece of the body as it arrived; None at its end."""
        self.streaming = True
        while True:
            if self.chunks:
                data = self.chunks.popleft()
                self.buffered -= len(data)
                if self.paused and self.buffered < _LOW_WATER and self.transport is not None:
                    self.paused = False
                    self._last_data = self.loop.time()  # the wait was ours, not the engine's
                    if not self.closed:
                        self.transport.resume_reading()
                return data
            if self.complete:
                return None
            await self._wait()

    async def body(self) -> bytes:
        while not self.complete:
            await self._wait()
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed

    def close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
        self._gone()

    def when_gone(self, callback: Callable[[], None]) -> None:
        """`callback` once, when the connection closes (at once if it already has)."""
        self._on_gone = callback
        if self.closed:
            self._gone()

    def _gone(self) -> None:
        if (callback := self._on_gone) is not None:
            self._on_gone = None
            callback()

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.error is not None and not self.complete:
            raise self.error

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._cancel_timer()
        self._wake()

    def _check_timeout(self) -> None:
        # One timer per request, moved on only when it fires: cheaper than one per read.
        if self.complete or self.closed:
            return
        now = self.loop.time()
        if self.paused:  # nothing is read while the consumer catches up: not the engine's delay
            self._last_data = now
        due = self._last_data + self.timeout_s
        if now >= due:
            self._fail(ReadTimeout(f"no answer from the engine for {self.timeout_s:g} s"))
            self.close()
        else:
            self._timer = self.loop.call_at(due, self._check_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Answer:
    """An engine's answer whose status and headers have arrived; its body is read once, whole or in
    pieces, and `release` (after the end) or `close` (otherwise) hands the connection back."""

    def __init__(self, pool: Pool, connection: _Connection) -> None:
        self._pool = pool
        self._connection = connection
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers  # lower-case names
        self._done = False

    async def read(self) -> bytes:
        try:
            data = await self._connection.body()
        except BaseException:
            self.close()
            raise
        self.release()
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        while (data := await self._connection.chunk()) is not None:
            yield data

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._pool.put_back(self._connection)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._connection.close()


class Pool:
    """Keep-alive connections to one engine (`http://host:port/prefix`), most recently used first.

    At most ``max_connections`` are open at once (idle ones included); a request beyond them waits
    for one to be handed back or closed, as long as its timeout, in the order they came.
    """

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout_s: float,
        connect_timeout_s: float,
        keepalive_s: float,
        user_agent: str,
        max_connections: int = 100,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http:// URL: {base_url}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if self.port == 80 else f"{host}:{self.port}"
        self._fixed = f"Host: {authority}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\n".encode()
        self._fixed += _header_lines(headers)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self.max_connections = max_connections
        self._idle: deque[_Connection] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = 0  # connections open or being opened, on the current loop
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._generation = 0  # moves on with the loop: connections of an earlier one no longer count

    async def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Answer:
        """Sends the request and waits for the answer's status and headers."""
        head = b"%s %s/%s HTTP/1.1\r\n" % (method.encode(), self.prefix.encode(), path.encode())
        extra = _header_lines(headers)
        if body is not None:
            extra += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        data = head + self._fixed + extra + b"\r\n" + (body or b"")
        while True:
            connection, reused = await self._take(timeout_s)
            connection.send(data)
            try:
                await connection.head()
            except Disconnected:
                connection.close()
                # A pooled connection the engine closed while it sat idle fails before any byte of an
                # answer: the request never reached the engine, so it goes once more on a new one.
                if reused and not connection.received:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            return Answer(self, connection)

    async def _take(self, timeout_s: float | None) -> tuple[_Connection, bool]:
        loop = self._loop
        # Connections belong to the loop that opened them. That loop still running is this one
        # (the stack runs on one): cheaper to ask than get_running_loop(), which calls getpid().
        if loop is None or not loop.is_running():
            self.close()
            loop = self._loop = asyncio.get_running_loop()
            self._open, self._generation = 0, self._generation + 1
            self._waiters.clear()
        waited = False
        while True:
            now = loop.time()
            while self._idle:
                connection = self._idle.pop()
                stale = connection.transport is None or connection.transport.is_closing()
                if stale or connection.closed or now - connection.idle_since > self.keepalive_s:
                    connection.close()
                    continue
                connection.timeout_s = timeout_s or self.timeout_s
                return connection, True
            if self._open < self.max_connections:
                break
            # One that waited before keeps its place at the head of the queue.
            await self._wait_for_turn(loop, timeout_s or self.timeout_s, first=waited)
            waited = True
        self._open += 1
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, timeout_s or self.timeout_s), self.host, self.port
                )
        except BaseException as exc:
            self._open -= 1
            self._next_turn()
            if isinstance(exc, TimeoutError):
                raise ConnectError(f"timed out connecting to {self.host}:{self.port}") from None
            if isinstance(exc, OSError):
                raise ConnectError(
                    f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}"
                ) from None
            raise
        generation = self._generation
        connection.when_gone(lambda: self._closed_one(generation))
        return connection, False

    async def _wait_for_turn(self, loop: asyncio.AbstractEventLoop, timeout_s: float, *, first: bool) -> None:
        turn = loop.create_future()
        if first:
            self._waiters.appendleft(turn)
        else:
            self._waiters.append(turn)
        try:
            async with asyncio.timeout(timeout_s):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._next_turn()  # given a turn it will not take (cancelled, timed out): the next one's
            else:
                turn.cancel()  # _next_turn skips it
            if isinstance(exc, TimeoutError):
                raise Busy(
                    f"all {self.max_connections} connections to it stayed in use for {timeout_s:g} s "
                    "(max_connections)"
                ) from None
            raise

    def _closed_one(self, generation: int) -> None:
        if generation == self._generation:
            self._open -= 1
            self._next_turn()

    def _next_turn(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    def put_back(self, connection: _Connection) -> None:
        if connection.reusable():
            connection.idle_since = connection.loop.time()
            self._idle.append(connection)
            self._next_turn()
        elif not (connection.closed or connection.complete or connection.error):
            # Released before its answer ended (a stream read up to its [DONE], the HTTP end of the
            # answer still on its way): pooled once that end arrives; closed by the read timeout if not.
            connection.when_complete = lambda: self.put_back(connection)
        else:
            connection.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
