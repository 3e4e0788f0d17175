"""The server's HTTP protocol (uvicorn's httptools one, writes gathered): an answer made at once
reaches the socket as one write, head and body together; a streamed answer's pieces still leave as
they are made; a connection closed after its answer sends the answer first."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from llamastack.stack.server.http_protocol import GatheringHttpToolsProtocol


class SocketEnd:
    """What uvicorn writes to, standing in for the OS socket: records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8321)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        pass


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for piece in (b"one", b"two"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0.01)  # the next piece is made in a later step
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _protocol() -> tuple[GatheringHttpToolsProtocol, SocketEnd]:
    config = uvicorn.Config(_app, log_level="warning", access_log=False)
    config.load()
    protocol = GatheringHttpToolsProtocol(config, ServerState(), app_state={})
    end = SocketEnd()
    protocol.connection_made(end)  # type: ignore[arg-type]
    return protocol, end


async def _until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the answer did not come")


async def test_an_answer_made_at_once_is_one_write() -> None:
    protocol, end = _protocol()
    for _ in range(2):  # and again on the kept-alive connection
        before = len(end.writes)
        protocol.data_received(b"GET /answer HTTP/1.1\r\nHost: x\r\n\r\n")
        await _until(lambda n=before: len(end.writes) > n and end.writes[-1].endswith(b'{"ok":true}'))
        await asyncio.sleep(0.02)
        [write] = end.writes[before:]
        assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b'\r\n\r\n{"ok":true}')
    protocol.connection_lost(None)


async def test_a_streamed_answer_leaves_piece_by_piece() -> None:
    protocol, end = _protocol()
    protocol.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await _until(lambda: end.writes and end.writes[-1].endswith(b"0\r\n\r\n"))
    joined = b"".join(end.writes)
    assert joined.index(b"one") < joined.index(b"two")
    # The head goes with the first piece; each later piece leaves in the step it was made in.
    assert len(end.writes) == 3 and end.writes[0].startswith(b"HTTP/1.1 200") and b"one" in end.writes[0]
    protocol.connection_lost(None)


async def test_a_connection_closed_after_its_answer_sends_the_answer_first() -> None:
    protocol, end = _protocol()
    protocol.data_received(b"GET /answer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await _until(lambda: end.closed)
    assert b"".join(end.writes).endswith(b'{"ok":true}')
