"""Stored chat completions: what the OpenAI route answered, with the messages it answered.

Completions made through ``POST /v1/openai/v1/chat/completions`` (streamed or not) are kept in the
stack's store unless the request says ``store: false`` or the run config turns storing off
(``inference_store.enabled: false``); ``GET /v1/openai/v1/chat/completions[/{id}]`` reads them back.
Each record is validated before it is written; one that no longer validates is logged and skipped,
never a 500. With API keys, a key sees only its own completions.
"""

from __future__ import annotations

from ..access import OwnerIndex
from ..apis.common import Order
from ..apis.inference import openai as o
from ..errors import BadRequestError, NotFoundError
from ..storage.kvstore import KVStore
from ..storage.records import RecordStore

_KIND = "chat_completion"
MAX_LIST_LIMIT = 100


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
        await self.owners.claim(record.id)  # before the record: never an unowned record
        await self.records.put(record.id, record)

    async def get(self, completion_id: str) -> o.OpenAICompletionWithInputMessages:
        await self.owners.check(completion_id, lambda: _not_found(completion_id))
        return await self.records.require(completion_id, lambda: _not_found(completion_id))

    async def list(
        self, *, after: str | None, limit: int, order: Order, model: str | None
    ) -> o.ListOpenAIChatCompletionResponse:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequestError(f"limit must be between 1 and {MAX_LIST_LIMIT}.")
        records = [r for r in await self.records.list() if model is None or r.model == model]
        records = await self.owners.visible(records, key=lambda r: r.id)
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
