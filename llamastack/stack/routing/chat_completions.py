"""Stored chat completions: what the OpenAI route answered, with the messages it answered.

Completions made through ``POST /v1/openai/v1/chat/completions`` (streamed or not) are kept in the
stack's store unless the request says ``store: false`` or the run config turns storing off
(``inference_store.enabled: false``); ``GET /v1/openai/v1/chat/completions[/{id}]`` reads them back.
Each record is validated before it is written; one that no longer validates is logged and skipped,
never a 500. With API keys, a key sees only its own completions.

Writes are behind the answer: ``save`` validates the record and hands it to one background writer,
so a request does not wait for the disk (a synced sqlite commit, several milliseconds); the writer
starts 50 ms later (5 ms on a shared database, which other replicas read), once the answer has gone
out, and writes everything waiting by then in one commit (so a busy server pays for one commit per
batch, not per answer). Until the writer has
stored it, the record is read from memory, so a GET right after the create finds it.
``close`` (at shutdown) writes whatever is still waiting. A record acknowledged just before a crash
of the process may be lost; these are a log of answers already given, not state a client relies on
to proceed. When the writer falls far behind, ``save`` writes inline instead (bounded memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
from dataclasses import dataclass

from ..access import OwnerIndex, can_see, owner_for_new_record
from ..apis.common import Order
from ..apis.inference import openai as o
from ..errors import BadRequestError, NotFoundError
from ..storage.kvstore import KVStore, shared_by_replicas
from ..storage.records import RecordStore

log = logging.getLogger(__name__)

_KIND = "chat_completion"
MAX_LIST_LIMIT = 100
_MAX_PENDING = 1000  # beyond this many unwritten records, saves write inline
_MAX_BATCH = 100  # records per commit
# The writer starts this long after a save: by then the answer is on its way, so the write (a thread
# hop and a synced commit, about 1 ms of CPU) does not compete with sending it, and the answers of
# the meantime share its commit. Another replica reads only what is written, so on a shared database
# the wait is short (there a commit is a round trip to the server, not a sync of a local file).
_WRITE_DELAY_S = 0.05
_SHARED_WRITE_DELAY_S = 0.005


@dataclass(frozen=True, slots=True)
class _Pending:
    record: o.OpenAICompletionWithInputMessages
    raw: str  # the validated JSON that is written
    owner: str | None


def _not_found(completion_id: str) -> NotFoundError:
    return NotFoundError(
        f"Chat completion '{completion_id}' not found. List stored ones with "
        "GET /v1/openai/v1/chat/completions; completions made with store: false are not kept."
    )


class ChatCompletionStore:
    def __init__(self, store: KVStore, *, enabled: bool) -> None:
        self.records = RecordStore(
            store, o.OpenAICompletionWithInputMessages, kind=_KIND, label="chat completion"
        )
        self.enabled = enabled
        self.owners = OwnerIndex(store, _KIND)
        self._pending: dict[str, _Pending] = {}  # validated, not yet written; insertion order
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._delay_s = _SHARED_WRITE_DELAY_S if shared_by_replicas(store) else _WRITE_DELAY_S
        self._closed = False

    def wants(self, request_store: bool | None) -> bool:
        return self.enabled and request_store is not False

    async def save(
        self, completion: o.OpenAIChatCompletion, input_messages: list[o.OpenAIMessageParam]
    ) -> None:
        record = o.OpenAICompletionWithInputMessages(
            id=completion.id,
            choices=completion.choices,
            created=completion.created,
            model=completion.model,
            input_messages=input_messages,
        )
        stored, raw = self.records.validate(record.id, record)  # an invalid record fails the request
        pending = _Pending(stored, raw, owner_for_new_record())
        if self._closed or len(self._pending) >= _MAX_PENDING:
            await self._write(record.id, pending)
            return
        self._pending[record.id] = pending
        self._wake.set()
        if self._writer is None or self._writer.done():
            # A fresh context: the writer must not run as the principal of the request that started it.
            self._writer = asyncio.get_running_loop().create_task(
                self._write_behind(), context=contextvars.Context()
            )

    def _rows(self, completion_id: str, pending: _Pending) -> list[tuple[str, str]]:
        # The owner with the record, in the same commit: never an unowned one. Without an owner (no
        # API keys) there is nothing to write: the id is a fresh one of this server's, so no leftover
        # can own it.
        rows = [] if pending.owner is None else [self.owners.row(completion_id, pending.owner)]
        return [*rows, (self.records.prefix + completion_id, pending.raw)]

    async def _write(self, completion_id: str, pending: _Pending) -> None:
        await self.records.kv.set_many(self._rows(completion_id, pending))

    async def _write_behind(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._delay_s)
            self._wake.clear()
            await self._drain()

    async def _drain(self) -> None:
        while self._pending:
            batch = list(itertools.islice(self._pending.items(), _MAX_BATCH))
            try:
                await self.records.kv.set_many([row for cid, p in batch for row in self._rows(cid, p)])
            except Exception:  # the batch failed: one at a time, so one bad write loses only itself
                for completion_id, pending in batch:
                    try:
                        await self._write(completion_id, pending)
                    except Exception:
                        log.exception("Could not store chat completion '%s'", completion_id)
            for completion_id, pending in batch:
                # Only once written: until then reads find it here.
                if self._pending.get(completion_id) is pending:
                    del self._pending[completion_id]

    async def close(self) -> None:
        """Writes every record still waiting; later saves write inline."""
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self._drain()

    async def get(self, completion_id: str) -> o.OpenAICompletionWithInputMessages:
        pending = self._pending.get(completion_id)
        if pending is not None:
            if not can_see(pending.owner):
                raise _not_found(completion_id)
            return pending.record
        await self.owners.check(completion_id, lambda: _not_found(completion_id))
        return await self.records.require(completion_id, lambda: _not_found(completion_id))

    async def list(
        self, *, after: str | None, limit: int, order: Order, model: str | None
    ) -> o.ListOpenAIChatCompletionResponse:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequestError(f"limit must be between 1 and {MAX_LIST_LIMIT}.")
        waiting = [p for p in list(self._pending.values()) if can_see(p.owner)]
        records = [r for r in await self.records.list() if r.id not in self._pending]
        records = await self.owners.visible(records, key=lambda r: r.id)
        # Still waiting for the writer (re-read after the awaits: some may have been written since).
        listed = {r.id for r in records}
        records += [p.record for p in waiting if p.record.id not in listed]
        records = [r for r in records if model is None or r.model == model]
        records.sort(key=lambda r: (r.created, r.id), reverse=order == Order.desc)
        if after is not None:
            ids = [r.id for r in records]
            if after not in ids:
                raise BadRequestError(f"after: '{after}' is not a stored chat completion in this list.")
            records = records[ids.index(after) + 1 :]
        page = records[:limit]
        return o.ListOpenAIChatCompletionResponse(
            data=page,
            has_more=len(records) > limit,
            first_id=page[0].id if page else "",
            last_id=page[-1].id if page else "",
        )
