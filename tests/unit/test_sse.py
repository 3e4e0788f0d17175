"""The SSE response on the ASGI level: the frames as they go out, the error event, the done marker,
keep-alive comments, and a client that leaves closing the source at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llamastack.stack.apis.inference import openai as o
from llamastack.stack.apis.inference.core import GenerationChunk, TokenLogprob, ToolCallOut, Usage
from llamastack.stack.errors import ServerBusyError
from llamastack.stack.server.sse import data_frame, sse_response, typed_event_response
from llamastack.stack.translate import native as tn
from llamastack.stack.translate.openai import ChatChunkBuilder


class Client:
    """An ASGI server's side of one request: what was sent, and a disconnect when asked."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def _chunk(text: str) -> o.OpenAIChatCompletionChunk:
    return o.OpenAIChatCompletionChunk(
        id="chatcmpl-1",
        created=1,
        model="m",
        choices=[o.OpenAIChunkChoice(index=0, delta=o.OpenAIChoiceDelta(content=text))],
    )


async def _run(response: Any, client: Client) -> None:
    await response({"type": "http", "method": "POST"}, client.receive, client.send)


async def test_frames_headers_and_done_marker() -> None:
    async def source() -> AsyncIterator[str]:
        for piece in ("Hel", "lo\n", 'a "quote" é'):
            yield piece

    client = Client()
    await _run(sse_response([_chunk("")], source(), lambda t: [_chunk(t)], done_marker=True), client)
    start = client.sent[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"x-accel-buffering"] == b"no"
    expected = [
        f"data: {_chunk(t).model_dump_json()}\n\n".encode() for t in ("", "Hel", "lo\n", 'a "quote" é')
    ]
    assert [m["body"] for m in client.sent[1:-1]] == [*expected, b"data: [DONE]\n\n"]
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_a_failure_after_the_start_is_one_error_event_and_the_end() -> None:
    async def source() -> AsyncIterator[str]:
        yield "one"
        raise ServerBusyError("The model's queue is full; retry in a moment.")

    client = Client()
    await _run(sse_response([], source(), lambda t: [_chunk(t)], done_marker=True), client)
    frames = client.body.decode().split("\n\n")
    assert frames[0] == f"data: {_chunk('one').model_dump_json()}"
    assert frames[1].startswith('data: {"error": {"message": "The model\'s queue is full')
    assert '"code": 503' in frames[1]
    assert frames[2:] == [""]  # no [DONE] after an error


async def test_a_client_that_leaves_closes_the_source_at_once() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield "first"
            await asyncio.sleep(60)  # a generation that would go on for a long time
            yield "never"
        finally:
            closed.set()

    client = Client()
    run = asyncio.ensure_future(
        _run(sse_response([], source(), lambda t: [_chunk(t)], done_marker=True), client)
    )
    while len(client.sent) < 2:
        await asyncio.sleep(0.01)
    client.leave.set()
    await asyncio.wait_for(run, 5)
    assert closed.is_set()
    assert b"never" not in client.body and b"[DONE]" not in client.body


async def test_a_quiet_stream_gets_keep_alive_comments() -> None:
    async def source() -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(0.3)
        yield "b"

    response = sse_response([], source(), lambda t: [_chunk(t)], done_marker=False)
    response.ping_interval_s = 0.05
    client = Client()
    await _run(response, client)
    bodies = [m["body"] for m in client.sent[1:]]
    pings = [b for b in bodies if b.startswith(b": ping - ")]
    assert pings and all(b.endswith(b"\n\n") for b in pings)
    assert bodies[-1] == b"" and bodies[-2] == data_frame(_chunk("b"))  # no ping after the end


async def test_typed_events_carry_their_type() -> None:
    async def source() -> AsyncIterator[o.OpenAIChatCompletionChunk]:
        yield _chunk("x")

    client = Client()
    await _run(typed_event_response(source()), client)
    assert client.body == f"event: message\ndata: {_chunk('x').model_dump_json()}\n\n".encode()


@pytest.mark.parametrize("text", ["plain", "line\nbreak\r\n", "tab\t\u0001\u001f\u007f", "é😀\u2028", '"\\'])
def test_a_frame_is_the_model_json_on_one_data_line(text: str) -> None:
    frame = data_frame(_chunk(text))
    assert frame == f"data: {_chunk(text).model_dump_json()}\n\n".encode()
    assert frame.count(b"\n") == 2 and b"\r" not in frame


@pytest.mark.parametrize("index", [0, 3])
@pytest.mark.parametrize("text", ["Hello", " world\n", 'say "hi" \\ \t\u0000\u001b', "é😀\u2028中文"])
def test_a_text_chunk_encoded_directly_is_byte_for_byte_the_models_json(text: str, index: int) -> None:
    builder = ChatChunkBuilder('a "model" é', include_usage=True)
    chunk = GenerationChunk(text=text)
    [model] = builder.chunks(chunk, index)
    assert builder.text_json(chunk, index) == model.model_dump_json().encode()


def test_other_chunks_are_left_to_the_models() -> None:
    builder = ChatChunkBuilder("m", include_usage=False)
    call = ToolCallOut(id="call_1", name="f", arguments="{}")
    for chunk in (
        GenerationChunk(text=""),
        GenerationChunk(text="x", logprobs=[TokenLogprob(token="x", logprob=-0.1, top=[])]),
        GenerationChunk(text="x", finish_reason="stop", usage=Usage(prompt_tokens=1, completion_tokens=1)),
        GenerationChunk(tool_calls=[call], tool_call_text="[]"),
    ):
        assert builder.text_json(chunk) is None


@pytest.mark.parametrize("text", ["Hello", 'say "hi" \\ \n\u0000', "é😀\u2028"])
def test_a_native_text_chunk_encoded_directly_is_byte_for_byte_the_models_json(text: str) -> None:
    chunk = GenerationChunk(text=text)
    [model] = tn.chat_stream_chunks(chunk)
    assert tn.chat_stream_text_json(chunk) == model.model_dump_json().encode()
    assert tn.chat_stream_text_json(GenerationChunk(text=text, finish_reason="stop")) is None
    assert tn.chat_stream_text_json(GenerationChunk(text=text, tool_call_text="[]")) is None
