"""A Responses stream that fails after it started ends with response.failed carrying the error, and
keeps nothing; one that finishes is numbered in order and stored whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llamastack.stack.apis.inference.core import ChatRequest, GenerationChunk, Usage
from llamastack.stack.apis.responses import CreateOpenaiResponseRequest
from llamastack.stack.errors import NotFoundError, ServerBusyError
from llamastack.stack.routing.responses import ResponsesRouter
from llamastack.stack.storage.kvstore import SqliteKVStore


class ScriptedInference:
    """An engine that streams the given pieces, then fails (fail=True) or finishes."""

    def __init__(self, pieces: list[str], *, fail: bool) -> None:
        self.pieces = pieces
        self.fail = fail

    async def chat_stream(self, model_id: str, request: ChatRequest) -> AsyncIterator[GenerationChunk]:
        for piece in self.pieces:
            yield GenerationChunk(text=piece)
        if self.fail:
            raise ServerBusyError("The model's queue is full; retry in a moment.")
        yield GenerationChunk(finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=2))


async def _run(tmp_path: Path, *, fail: bool) -> tuple[ResponsesRouter, list]:
    router = ResponsesRouter(ScriptedInference(["Hel", "lo"], fail=fail), SqliteKVStore(tmp_path / "kv.db"))  # type: ignore[arg-type]
    stream = await router.create_stream(CreateOpenaiResponseRequest(model="m", input="hi", stream=True))
    return router, [event async for event in stream]


async def test_failure_after_start_is_response_failed(tmp_path: Path) -> None:
    router, events = await _run(tmp_path, fail=True)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "rate_limit_exceeded"
    assert "queue is full" in failed.error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))
    with pytest.raises(NotFoundError):
        await router.get(failed.id)


async def test_finished_stream_is_stored(tmp_path: Path) -> None:
    router, events = await _run(tmp_path, fail=False)
    assert events[-1].type == "response.completed"
    done = events[-1].response
    assert done.output[0].content[0].text == "Hello" and done.usage.total_tokens == 5
    assert (await router.get(done.id)).output == done.output
