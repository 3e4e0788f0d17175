"""The remote engines' HTTP/1.1 client (`http1`, behind `transport.EngineClient` for http:// engines)
against real loopback servers scripted byte by byte: connection reuse, a pooled connection the
engine closed, answers cut short, timeouts, streams read as they arrive and closed early, and
header values that would split a request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from llamastack.providers.inference.remote.openai_compat import http1, transport

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Engine:
    """A TCP server on loopback running `script` for each connection; counts connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Engine:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def _answer(body: object, *, status: int = 200, extra: bytes = b"") -> bytes:
    data = json.dumps(body).encode()
    return b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        len(data),
        extra,
        data,
    )


def _client(url: str, timeout_s: float = 5.0) -> transport.EngineClient:
    return transport.EngineClient(
        url, {"Authorization": "Bearer k"}, timeout_s=timeout_s, connect_timeout_s=2
    )


async def test_requests_reuse_one_connection_and_carry_the_json_and_headers() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await engine.read_request(reader)
            sent = json.loads(request.split(b"\r\n\r\n", 1)[1])
            writer.write(_answer({"echo": sent, "n": len(engine.requests)}))

    async with Engine(script) as engine:
        client = _client(engine.url)
        try:
            answers = [
                await client.post_json("chat/completions", {"i": i}, {"X-Extra": "yes"}) for i in range(5)
            ]
        finally:
            await client.close()
    assert [a["echo"]["i"] for a in answers] == [0, 1, 2, 3, 4]
    assert engine.connections == 1
    head = engine.requests[0].split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert head[0] == "POST /v1/chat/completions HTTP/1.1"
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in head[1:])}
    assert headers["authorization"] == "Bearer k" and headers["x-extra"] == "yes"
    assert headers["content-type"] == "application/json" and headers["host"].startswith("127.0.0.1:")


async def test_a_pooled_connection_the_engine_closed_is_replaced_without_an_error() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await engine.read_request(reader)
        writer.write(_answer({"ok": True}))  # keep-alive by HTTP/1.1's default, then gone
        await writer.drain()

    async with Engine(script) as engine:
        client = _client(engine.url)
        try:
            for _ in range(3):
                assert await client.get_json("models", {}) == {"ok": True}
                await asyncio.sleep(0.05)  # the engine's close arrives while the connection is idle
        finally:
            await client.close()
    assert engine.connections == 3 and len(engine.requests) == 3


async def test_an_answer_cut_short_is_a_transport_failure_and_not_sent_again() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await engine.read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial":')
        await writer.drain()

    async with Engine(script) as engine:
        client = _client(engine.url)
        try:
            with pytest.raises(http1.Disconnected) as caught:
                await client.post_json("completions", {}, {})
        finally:
            await client.close()
    failure = transport.failure(caught.value)
    assert failure is not None and failure.kind == "transport"
    assert len(engine.requests) == 1


async def test_an_engine_that_stops_answering_times_out_and_one_that_is_not_there_is_a_connect_failure() -> (
    None
):
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await engine.read_request(reader)
        await asyncio.sleep(30)

    async with Engine(script) as engine:
        client = _client(engine.url, timeout_s=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(http1.ReadTimeout) as caught:
                await client.post_json("completions", {}, {})
        finally:
            await client.close()
        assert 0.25 < loop.time() - started < 3
        kind = transport.failure(caught.value)
        assert kind is not None and kind.kind == "timeout"
        url = engine.url
    gone = _client(url)  # the server is closed now: nothing listens on its port
    with pytest.raises(http1.ConnectError) as refused:
        await gone.post_json("completions", {}, {})
    kind = transport.failure(refused.value)
    assert kind is not None and kind.kind == "connect"


async def _stream_script(
    engine: Engine, events: int, closed: asyncio.Event, *, end_later: bool = False
) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await engine.read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            try:
                for i in range(events):
                    event = b'data: {"i": %d}\n\n' % i
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                    await asyncio.sleep(0.01)
                done = b"data: [DONE]\n\n"
                writer.write(b"%x\r\n%s\r\n" % (len(done), done))
                if end_later:  # the HTTP end of the answer after the stream's own end, as SSE servers do
                    await writer.drain()
                    await asyncio.sleep(0.05)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            except ConnectionError:
                closed.set()
                return
            if reader.at_eof():
                closed.set()
                return

    return script


@pytest.mark.parametrize("end_later", [False, True])
async def test_a_stream_arrives_event_by_event_and_a_finished_one_keeps_its_connection(
    end_later: bool,
) -> None:
    closed = asyncio.Event()
    engine = Engine(lambda r, w: asyncio.sleep(0))
    engine.script = await _stream_script(engine, 5, closed, end_later=end_later)
    async with engine:
        client = _client(engine.url)
        try:
            for _ in range(2):
                stream = await client.open_stream("chat/completions", {"stream": True}, {})
                seen = [event["i"] async for event in stream.events()]
                stream.close()
                assert seen == [0, 1, 2, 3, 4]
                await asyncio.sleep(0.1)  # the answer's HTTP end arrives
        finally:
            await client.close()
    assert engine.connections == 1


async def test_a_stream_closed_early_drops_its_connection() -> None:
    closed = asyncio.Event()
    engine = Engine(lambda r, w: asyncio.sleep(0))
    engine.script = await _stream_script(engine, 200, closed)
    async with engine:
        client = _client(engine.url)
        try:
            stream = await client.open_stream("chat/completions", {"stream": True}, {})
            events = stream.events()
            assert (await anext(events))["i"] == 0
            await events.aclose()
            stream.close()
            await asyncio.wait_for(closed.wait(), 5)  # the engine saw the connection end
            stream = await client.open_stream("chat/completions", {"stream": True}, {})
            stream.close()
        finally:
            await client.close()
    assert engine.connections == 2


async def test_an_error_answer_is_a_status_error_with_the_engines_headers_and_body() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await engine.read_request(reader)
            writer.write(
                _answer({"error": {"message": "slow down"}}, status=429, extra=b"Retry-After: 2\r\n")
            )

    async with Engine(script) as engine:
        client = _client(engine.url)
        try:
            with pytest.raises(transport.EngineStatusError) as caught:
                await client.post_json("chat/completions", {}, {})
            with pytest.raises(transport.EngineStatusError):
                await client.open_stream("chat/completions", {}, {})
        finally:
            await client.close()
    answer = caught.value.response
    assert answer.status_code == 429 and answer.headers["retry-after"] == "2" and "slow down" in answer.text
    assert engine.connections == 1  # a whole error answer leaves the connection usable


async def test_a_large_answer_is_read_whole_through_flow_control() -> None:
    big = {"data": ["x" * 1000] * 5000}  # ~5 MB: reading pauses and resumes several times

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await engine.read_request(reader)
        writer.write(_answer(big))
        await writer.drain()

    async with Engine(script) as engine:
        client = _client(engine.url)
        try:
            assert await client.get_json("models", {}) == big
        finally:
            await client.close()


@pytest.mark.parametrize("value", ["k\r\nX-Injected: 1", "k\nHost: elsewhere", "k\x00"])
async def test_a_header_value_that_would_split_the_request_is_refused_before_sending(value: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await engine.read_request(reader)
        writer.write(_answer({}))

    async with Engine(script) as engine:
        client = _client(engine.url)
        try:
            with pytest.raises(ValueError, match="line break or NUL"):
                await client.post_json("chat/completions", {}, {"Authorization": f"Bearer {value}"})
        finally:
            await client.close()
    assert engine.requests == []


async def test_a_stream_read_slower_than_it_arrives_is_held_back_without_timing_out() -> None:
    payload = "y" * 4000

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await engine.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(1000):  # ~4 MB, sent as fast as the socket takes it
            event = b'data: {"i": %d, "p": "%s"}\n\n' % (i, payload.encode())
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        await writer.drain()

    async with Engine(script) as engine:
        client = _client(engine.url, timeout_s=0.3)  # shorter than the reading takes
        try:
            stream = await client.open_stream("chat/completions", {}, {})
            seen = 0
            async for event in stream.events():
                assert event["i"] == seen
                seen += 1
                if seen == 1:  # meanwhile the engine fills the buffer and the socket is paused
                    await asyncio.sleep(0.6)
            stream.close()
        finally:
            await client.close()
    assert seen == 1000


async def test_an_engine_behind_a_proxy_setting_goes_through_aiohttp_with_the_same_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy in the environment hands the engine to aiohttp (which honours it; NO_PROXY exempts
    # loopback here): JSON, error answers and streams read the same as through http1.
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await engine.read_request(reader)
            if b"/stream " in request:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for event in [b'data: {"i": %d}\n\n' % i for i in range(3)] + [b"data: [DONE]\n\n"]:
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                writer.write(b"0\r\n\r\n")
                continue
            status = 429 if b"/limited " in request else 200
            writer.write(_answer({"ok": status}, status=status, extra=b"Retry-After: 2\r\n"))

    async with Engine(script) as engine:
        client = _client(engine.url)
        assert client._pool is None  # aiohttp's session
        try:
            assert await client.post_json("chat", {"x": 1}, {}) == {"ok": 200}
            with pytest.raises(transport.EngineStatusError) as caught:
                await client.post_json("limited", {}, {})
            stream = await client.open_stream("stream", {}, {})
            assert [e["i"] async for e in stream.events()] == [0, 1, 2]
            stream.close()
        finally:
            await client.close()
    assert caught.value.response.status_code == 429 and caught.value.response.headers["Retry-After"] == "2"


class _Held:
    """An engine whose answers wait for `release`; counts the connections open at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.open = 0
        self.most_open = 0

    async def script(
        self, engine: Engine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                request = await engine.read_request(reader)
                await self.release.wait()
                writer.write(_answer({"echo": json.loads(request.split(b"\r\n\r\n", 1)[1])}))
                await writer.drain()
        finally:
            self.open -= 1


def _limited(url: str, limit: int, timeout_s: float = 5.0) -> transport.EngineClient:
    return transport.EngineClient(url, {}, timeout_s=timeout_s, connect_timeout_s=2, max_connections=limit)


async def test_requests_beyond_the_connection_limit_wait_their_turn_and_are_all_answered() -> None:
    held = _Held()
    async with Engine(lambda r, w: held.script(engine, r, w)) as engine:
        client = _limited(engine.url, 2)
        try:
            calls = [asyncio.ensure_future(client.post_json("completions", {"i": i}, {})) for i in range(6)]
            await asyncio.sleep(0.2)
            assert engine.connections == 2 and len(engine.requests) == 2  # the other four wait
            assert not any(call.done() for call in calls)
            held.release.set()
            answers = await asyncio.gather(*calls)
        finally:
            await client.close()
    assert [a["echo"]["i"] for a in answers] == list(range(6))
    assert held.most_open == 2 and engine.connections == 2  # the two were reused, in turn


async def test_a_wait_for_a_connection_ends_at_the_timeout_and_a_cancelled_one_gives_its_turn_on() -> None:
    held = _Held()
    async with Engine(lambda r, w: held.script(engine, r, w)) as engine:
        client = _limited(engine.url, 1)
        try:
            first = asyncio.ensure_future(client.post_json("completions", {"i": 0}, {}))
            await asyncio.sleep(0.05)
            started = asyncio.get_running_loop().time()
            with pytest.raises(http1.Busy, match="stayed in use") as busy:
                await client.get_json("models", {}, timeout_s=0.3)  # waits as long as its timeout
            assert 0.25 < asyncio.get_running_loop().time() - started < 2
            kind = transport.failure(busy.value)  # a 503 with Retry-After, as from a busy engine
            assert kind is not None and (kind.kind, kind.status, kind.retry_after_s) == ("status", 503, 1)
            cancelled = asyncio.ensure_future(client.post_json("completions", {"i": 2}, {}))
            waiting = asyncio.ensure_future(client.post_json("completions", {"i": 3}, {}))
            await asyncio.sleep(0.05)
            cancelled.cancel()
            held.release.set()
            assert (await first)["echo"]["i"] == 0
            assert (await waiting)["echo"]["i"] == 3  # the cancelled one's turn came to it
            assert cancelled.cancelled()
            # Nothing was lost on the way: the one connection still serves, one request at a time.
            assert [(await client.post_json("completions", {"i": i}, {}))["echo"]["i"] for i in (4, 5)] == [
                4,
                5,
            ]
        finally:
            await client.close()
    assert held.most_open == 1
    assert [json.loads(r.split(b"\r\n\r\n", 1)[1])["i"] for r in engine.requests] == [0, 3, 4, 5]


async def test_failed_connects_and_closed_connections_free_their_place() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await engine.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    async with Engine(script) as engine:
        client = _limited(engine.url, 1, timeout_s=1.0)
        try:
            for _ in range(3):  # each answer closes its connection: the next one opens another
                assert await client.post_json("completions", {}, {}) == {}
        finally:
            await client.close()
        assert engine.connections == 3
        url = engine.url
    refused = _limited(url, 1, timeout_s=1.0)  # nothing listens there now
    for _ in range(3):
        with pytest.raises(http1.ConnectError, match="cannot connect"):
            await refused.post_json("completions", {}, {})


async def test_a_turn_given_to_a_request_cancelled_before_it_runs_goes_to_the_next_one() -> None:
    pool = http1.Pool(
        "http://127.0.0.1:9/v1",
        {},
        timeout_s=5,
        connect_timeout_s=1,
        keepalive_s=4,
        user_agent="t",
        max_connections=1,
    )
    loop = asyncio.get_running_loop()
    pool._loop, pool._open = loop, 1  # the one connection is in use
    given = asyncio.ensure_future(pool._wait_for_turn(loop, 5, first=False))
    nxt = asyncio.ensure_future(pool._wait_for_turn(loop, 5, first=False))
    await asyncio.sleep(0)
    pool._next_turn()  # the connection came back: the first waiter's turn...
    given.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(nxt, 1)
    assert given.cancelled() and not pool._waiters
