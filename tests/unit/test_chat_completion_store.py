"""Stored chat completions are written behind the answer: readable at once, on disk after close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from llamastack.stack.access import Principal, acting_as
from llamastack.stack.apis.common import Order
from llamastack.stack.apis.inference import openai as o
from llamastack.stack.errors import InvalidRecordError, NotFoundError
from llamastack.stack.routing.chat_completions import ChatCompletionStore
from llamastack.stack.storage.kvstore import SqliteKVStore


class GatedKV(SqliteKVStore):
    """Writes wait until the gate opens: the disk is "slow"."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.gate.set()

    async def set(self, key: str, value: str) -> None:
        await self.gate.wait()
        await super().set(key, value)

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        await self.gate.wait()
        await super().set_many(items)


def _completion(completion_id: str, model: str = "m") -> o.OpenAIChatCompletion:
    choice = o.OpenAIChoice(
        message=o.OpenAIAssistantMessageParam(content="hi"), finish_reason="stop", index=0
    )
    return o.OpenAIChatCompletion(id=completion_id, choices=[choice], created=1, model=model)


_ASKED: list[o.OpenAIMessageParam] = [o.OpenAIUserMessageParam(content="hello")]


async def test_a_saved_completion_is_readable_before_and_after_it_reaches_the_disk(tmp_path: Path) -> None:
    kv = GatedKV(tmp_path / "kv.db")
    store = ChatCompletionStore(kv, enabled=True)
    kv.gate.clear()  # nothing reaches the disk yet
    await asyncio.wait_for(store.save(_completion("c1"), _ASKED), 1)  # does not wait for the disk
    assert await kv.get("chat_completion:c1") is None
    assert (await store.get("c1")).input_messages[0].content == "hello"
    listed = await store.list(after=None, limit=10, order=Order.desc, model=None)
    assert [c.id for c in listed.data] == ["c1"]
    assert (await store.list(after=None, limit=10, order=Order.desc, model="other")).data == []

    kv.gate.set()
    await store.close()  # writes whatever is still waiting
    assert await kv.get("chat_completion:c1") is not None
    reopened = ChatCompletionStore(kv, enabled=True)
    assert (await reopened.get("c1")).model == "m"
    await store.save(_completion("c2"), _ASKED)  # after close: written inline
    assert await kv.get("chat_completion:c2") is not None
    await kv.close()


async def test_a_waiting_completion_is_private_to_its_key(tmp_path: Path) -> None:
    kv = GatedKV(tmp_path / "kv.db")
    store = ChatCompletionStore(kv, enabled=True)
    kv.gate.clear()
    with acting_as(Principal("key-a")):
        await store.save(_completion("mine"), _ASKED)
        assert (await store.get("mine")).id == "mine"
    with acting_as(Principal("key-b")):
        with pytest.raises(NotFoundError):
            await store.get("mine")
        assert (await store.list(after=None, limit=10, order=Order.asc, model=None)).data == []
    kv.gate.set()
    await store.close()
    with acting_as(Principal("key-b")), pytest.raises(NotFoundError):
        await store.get("mine")  # the owner was written with the record, not the writer's context
    with acting_as(Principal("key-a")):
        assert (await store.get("mine")).id == "mine"
    await kv.close()


async def test_an_invalid_completion_fails_the_save_and_is_never_written(tmp_path: Path) -> None:
    kv = GatedKV(tmp_path / "kv.db")
    store = ChatCompletionStore(kv, enabled=True)
    good = _completion("bad")
    # model_copy skips validation: a choice that would not read back.
    broken = good.model_copy(update={"choices": [good.choices[0].model_copy(update={"index": "first"})]})
    with pytest.raises(InvalidRecordError):
        await store.save(broken, _ASKED)
    await store.close()
    assert await kv.get("chat_completion:bad") is None
    await kv.close()


class CountingKV(SqliteKVStore):
    """Counts commits of batches; fails any batch of more than `fail_over` pairs, once armed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.fail_over: int | None = None

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        if self.fail_over is not None and len(items) > self.fail_over:
            raise OSError("disk full")
        self.batches.append(len(items))
        await super().set_many(items)


async def test_completions_saved_together_reach_the_disk_in_one_commit(tmp_path: Path) -> None:
    kv = CountingKV(tmp_path / "kv.db")
    store = ChatCompletionStore(kv, enabled=True)
    with acting_as(Principal("key-a")):  # an owner row rides with each record
        for i in range(30):
            await store.save(_completion(f"c{i}"), _ASKED)
    await asyncio.sleep(0.2)  # the writer's delay, then one drain
    assert kv.batches == [60]
    assert len(await kv.values_with_prefix("chat_completion:")) == 30
    await store.close()
    await kv.close()


async def test_a_failed_batch_is_written_one_record_at_a_time(tmp_path: Path) -> None:
    kv = CountingKV(tmp_path / "kv.db")
    kv.fail_over = 1
    store = ChatCompletionStore(kv, enabled=True)
    for i in range(3):
        await store.save(_completion(f"c{i}"), _ASKED)
    await store.close()
    assert kv.batches == [1, 1, 1]
    assert sorted(k for k, _ in await kv.items_with_prefix("chat_completion:")) == [
        "chat_completion:c0",
        "chat_completion:c1",
        "chat_completion:c2",
    ]
    await kv.close()
