"""Stored chat completions: what the OpenAI route answered, with the messages it answered.

Completions made through ``POST /v1/openai/v1/chat/completions`` (streamed or not) are kept in the
stack's store unless the request says ``store: false`` or the run config turns storing off
(``inference_store.enabled: false``); ``GET /v1/openai/v1/chat/completions[/{id}]`` reads them back.
Each record is validated before it is written; one that no longer validates is logged and skipped,
never a 500. With API keys, a key sees only its own completions.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from ..access import OwnerIndex
from ..apis.common import Order
from ..apis.inference import openai as o
from ..errors import BadRequestError, NotFoundError
from ..storage.kvstore import KVStore

log = logging.getLogger(__name__)

_KIND = "chat_completion"
MAX_LIST_LIMIT = 100


def _not_found(completion_id: str) -> NotFoundError:
    return NotFoundError(
        f"Chat completion '{completion_id}' not found. List stored ones with "
        "GET /v1/openai/v1/chat/completions; completions made with store: false are not kept."
    )


class ChatCompletionStore:
    def __init__(self, store: KVStore, *, enabled: bool) -> None:
        self.store = store
        self.enabled = enabled
        self.owners = OwnerIndex(store, _KIND)

    def _key(self, completion_id: str) -> str:
        return f"{_KIND}:{completion_id}"

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
        # Validated from its own JSON before it is written: what is stored can always be read back.
        raw = record.model_dump_json()
        o.OpenAICompletionWithInputMessages.model_validate_json(raw)
        await self.owners.claim(record.id)
        await self.store.set(self._key(record.id), raw)

    def _load(self, key: str, raw: str) -> o.OpenAICompletionWithInputMessages | None:
        try:
            return o.OpenAICompletionWithInputMessages.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("Stored chat completion %s no longer validates; skipped: %s", key, exc.errors()[:2])
            return None

    async def get(self, completion_id: str) -> o.OpenAICompletionWithInputMessages:
        raw = await self.store.get(self._key(completion_id))
        record = self._load(completion_id, raw) if raw is not None else None
        if record is None:
            raise _not_found(completion_id)
        await self.owners.check(completion_id, lambda: _not_found(completion_id))
        return record

    async def list(
        self, *, after: str | None, limit: int, order: Order, model: str | None
    ) -> o.ListOpenAIChatCompletionResponse:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequestError(f"limit must be between 1 and {MAX_LIST_LIMIT}.")
        records = [
            record
            for raw in await self.store.values_with_prefix(f"{_KIND}:")
            if (record := self._load(_KIND, raw)) is not None and (model is None or record.model == model)
        ]
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
