"""uvicorn's httptools protocol, with a response's writes of one loop step sent as one.

uvicorn writes a response's status line and headers, then its body, as two socket writes: two
segments (it sets TCP_NODELAY) and, on loopback, two wake-ups of the client for one answer, where
each send costs tens of microseconds on a virtual machine and each wake-up more. Here the writes a
connection makes are gathered and handed to the socket at the loop's next step, so an answer made at
once leaves in one send, and a stream's events still leave as they are made (one step later at most).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _GatheringTransport:
    """The connection's transport, with `write` deferred to the next loop step and joined."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:  # reading, flow control, extra info, abort: the transport's
        return getattr(self._transport, name)


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_GatheringTransport(transport, self.loop))  # type: ignore[arg-type]
