"""The OpenAI Responses API over the stack's own inference core, with stored, per-key responses.

A response is one chat turn through the ``Inference`` API: its input items (after the chain of
``previous_response_id``: that response's input, then its output) and ``instructions`` become the
core ``ChatRequest``. Unless the request says ``store: false``, the finished response is kept with
every input item the model saw as a validated record, owned by the API key that made it; other keys
get the same 404 as for a missing id.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..access import OwnerIndex
from ..apis import responses as r
from ..apis.common import Order
from ..apis.inference.core import ChatRequest, GenerationChunk, GenerationResult, Inference, Usage
from ..errors import BadRequestError, NotFoundError, ServerBusyError, StackError
from ..pagination import paginate
from ..storage.kvstore import KVStore
from ..storage.records import RecordStore
from ..translate import responses as tr

log = logging.getLogger(__name__)

_KIND = "openai_response"
MAX_LIST_LIMIT = 100


def _not_found(response_id: str) -> NotFoundError:
    return NotFoundError(
        f"Response '{response_id}' not found. List stored ones with GET /v1/openai/v1/responses; "
        "responses made with store: false are not kept."
    )


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise BadRequestError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}.")


def _usage(usage: Usage | None) -> r.ResponseUsage | None:
    if usage is None:
        return None
    return r.ResponseUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _error_of(exc: BaseException) -> r.ResponseError:
    if isinstance(exc, StackError):
        status, message = exc.status_code, exc.detail
    else:
        log.exception("Response stream failed", exc_info=exc)
        status, message = 500, f"Internal server error ({type(exc).__name__}); see the server log."
    code = "rate_limit_exceeded" if isinstance(exc, ServerBusyError) else "server_error"
    return r.ResponseError(code=code if status >= 500 else "invalid_prompt", message=message)


class _Turn:
    """One request, prepared: the core request, every input item, and the response's fixed fields."""

    def __init__(self, request: r.CreateOpenaiResponseRequest, items: list[r.ResponseInputItem]) -> None:
        self.request = request
        self.items = items
        # Time-ordered ids: responses made in the same second still list in the order they were made.
        self.id = f"resp_{time.time_ns():016x}{uuid.uuid4().hex[:16]}"
        self.created_at = int(time.time())
        self.chat = ChatRequest(
            messages=tr.chat_messages(items, request.instructions),
            sampling=tr.sampling(request),
            json_schema=tr.json_schema(request.text),
            tools=tr.tool_options(request.tools, request.tool_choice),
        )

    def response(
        self,
        status: r.ResponseStatus,
        output: list[r.ResponseOutputItem],
        *,
        usage: Usage | None = None,
        error: r.ResponseError | None = None,
    ) -> r.OpenAIResponseObject:
        req = self.request
        return r.OpenAIResponseObject(
            id=self.id,
            created_at=self.created_at,
            model=req.model,
            status=status,
            output=output,
            error=error,
            parallel_tool_calls=bool(req.tools),
            previous_response_id=req.previous_response_id,
            temperature=req.temperature,
            top_p=req.top_p,
            text=req.text or r.ResponseText(format=r.ResponseTextFormat(type="text")),
            instructions=req.instructions,
            usage=_usage(usage),
            incomplete_details=r.IncompleteDetails(reason="max_output_tokens")
            if status == "incomplete"
            else None,
        )


def _status(finish_reason: str | None) -> r.ResponseStatus:
    return "incomplete" if finish_reason == "length" else "completed"


class ResponsesRouter:
    """Implements the ``Responses`` Protocol."""

    def __init__(self, inference: Inference, store: KVStore) -> None:
        self.inference = inference
        self.records = RecordStore(store, r.OpenAIResponseObjectWithInput, kind=_KIND, label="response")
        self.owners = OwnerIndex(store, _KIND)

    # --- create --------------------------------------------------------------------------------

    async def _stored(self, response_id: str) -> r.OpenAIResponseObjectWithInput:
        await self.owners.check(response_id, lambda: _not_found(response_id))
        return await self.records.require(response_id, lambda: _not_found(response_id))

    async def _turn(self, request: r.CreateOpenaiResponseRequest) -> _Turn:
        new_items = tr.input_items(request.input)
        history: list[r.ResponseInputItem] = []
        if request.previous_response_id is not None:
            previous = await self._stored(request.previous_response_id)
            history = [*previous.input, *previous.output]
        return _Turn(request, [*history, *new_items])

    async def _save(self, turn: _Turn, response: r.OpenAIResponseObject) -> None:
        if turn.request.store is False:
            return
        record = r.OpenAIResponseObjectWithInput(**dict(response), input=turn.items)
        await self.owners.claim(record.id)  # before the record: never an unowned record
        await self.records.put(record.id, record)

    async def create(self, request: r.CreateOpenaiResponseRequest) -> r.OpenAIResponseObject:
        turn = await self._turn(request)
        result: GenerationResult = await self.inference.chat(request.model, turn.chat)
        status = _status(result.finish_reason)
        output: list[r.ResponseOutputItem] = []
        if result.text or not result.tool_calls:
            output.append(tr.message_item(result.text, item_id=tr.new_id("msg"), status=status))
        output.extend(tr.function_call_item(call) for call in result.tool_calls)
        response = turn.response(status, output, usage=result.usage)
        await self._save(turn, response)
        return response

    async def create_stream(
        self, request: r.CreateOpenaiResponseRequest
    ) -> AsyncIterator[r.ResponseStreamEvent]:
        turn = await self._turn(request)
        stream = self.inference.chat_stream(request.model, turn.chat)
        first = await anext(stream)  # queue-full and engine errors still get their HTTP status
        return self._events(turn, first, stream)

    async def _events(
        self, turn: _Turn, first: GenerationChunk, rest: AsyncIterator[GenerationChunk]
    ) -> AsyncIterator[r.ResponseStreamEvent]:
        events = _StreamEvents(turn)
        try:
            yield events.lifecycle("response.created", turn.response("in_progress", []))
            yield events.lifecycle("response.in_progress", turn.response("in_progress", []))
            chunk: GenerationChunk | None = first
            while chunk is not None:
                for event in events.chunk(chunk):
                    yield event
                chunk = await anext(rest, None)
            for event in events.close_message():
                yield event
            response = turn.response(_status(events.finish_reason), events.output, usage=events.usage)
            await self._save(turn, response)
            terminal = "response.completed" if response.status == "completed" else "response.incomplete"
            yield events.lifecycle(terminal, response)
        except Exception as exc:
            # The stream has started, so the status cannot change: OpenAI's response.failed, then the end.
            yield events.lifecycle(
                "response.failed", turn.response("failed", events.output, error=_error_of(exc))
            )
        finally:
            closer = getattr(rest, "aclose", None)
            if closer is not None:
                await closer()

    # --- read ----------------------------------------------------------------------------------

    async def get(self, response_id: str) -> r.OpenAIResponseObject:
        record = await self._stored(response_id)
        return r.OpenAIResponseObject(**{k: v for k, v in dict(record).items() if k != "input"})

    async def list(
        self, *, after: str | None, limit: int, order: Order, model: str | None
    ) -> r.ListOpenAIResponseObject:
        _check_limit(limit)
        records = [x for x in await self.records.list() if model is None or x.model == model]
        records = await self.owners.visible(records, key=lambda x: x.id)
        records.sort(key=lambda x: (x.created_at, x.id), reverse=order == Order.desc)
        page = paginate(
            records,
            after=after,
            limit=limit,
            unknown_cursor=lambda name, ident: f"{name}: '{ident}' is not a stored response in this list.",
        )
        return r.ListOpenAIResponseObject(
            data=page.data, has_more=page.has_more, first_id=page.first_id or "", last_id=page.last_id or ""
        )

    async def input_items(
        self,
        response_id: str,
        *,
        after: str | None,
        before: str | None,
        include: Sequence[str] | None,
        limit: int,
        order: Order,
    ) -> r.ListOpenAIResponseInputItem:
        _check_limit(limit)
        if after is not None and before is not None:
            raise BadRequestError("Give after or before, not both.")
        record = await self._stored(response_id)
        items = list(record.input)
        if order == Order.desc:
            items.reverse()
        page = paginate(
            items,
            after=after,
            before=before,
            limit=limit,
            id_of=lambda item: item.id or "",
            unknown_cursor=lambda name, ident: (
                f"{name}: '{ident}' is not an input item of response '{response_id}'."
            ),
        )
        return r.ListOpenAIResponseInputItem(
            data=page.data, has_more=page.has_more, first_id=page.first_id, last_id=page.last_id
        )

    async def delete(self, response_id: str) -> r.OpenAIDeleteResponseObject:
        await self.owners.check(response_id, lambda: _not_found(response_id))
        if not await self.records.exists(response_id):
            raise _not_found(response_id)
        await self.records.delete(response_id)
        await self.owners.release(response_id)  # after the record, as OwnerIndex requires
        return r.OpenAIDeleteResponseObject(id=response_id)


class _StreamEvents:
    """Turns one generation's chunks into OpenAI's response events, numbered in order, and collects
    the finished output items."""

    def __init__(self, turn: _Turn) -> None:
        self.turn = turn
        self.sequence = 0
        self.slots: list[r.ResponseOutputItem | None] = []  # by output_index; None while open
        self.message_index: int | None = None
        self.message_id = tr.new_id("msg")
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    @property
    def output(self) -> list[r.ResponseOutputItem]:
        return [item for item in self.slots if item is not None]

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence - 1

    def lifecycle(self, kind: Any, response: r.OpenAIResponseObject) -> r.ResponseLifecycleEvent:
        return r.ResponseLifecycleEvent(type=kind, response=response, sequence_number=self._next())

    def _item(self, kind: Any, index: int, item: r.ResponseOutputItem) -> r.ResponseOutputItemEvent:
        return r.ResponseOutputItemEvent(
            type=kind, response_id=self.turn.id, output_index=index, item=item, sequence_number=self._next()
        )

    def _part(self, kind: Any, index: int, text: str) -> r.ResponseContentPartEvent:
        return r.ResponseContentPartEvent(
            type=kind,
            response_id=self.turn.id,
            item_id=self.message_id,
            output_index=index,
            content_index=0,
            part=r.ResponseOutputText(text=text),
            sequence_number=self._next(),
        )

    def _open_message(self) -> list[r.ResponseStreamEvent]:
        index = self.message_index = len(self.slots)
        self.slots.append(None)
        added = r.ResponseMessage(role="assistant", content=[], id=self.message_id, status="in_progress")
        return [
            self._item("response.output_item.added", index, added),
            self._part("response.content_part.added", index, ""),
        ]

    def chunk(self, chunk: GenerationChunk) -> list[r.ResponseStreamEvent]:
        events: list[r.ResponseStreamEvent] = []
        if chunk.text:
            if self.message_index is None:
                events.extend(self._open_message())
            assert self.message_index is not None
            self.text.append(chunk.text)
            events.append(
                r.ResponseOutputTextDeltaEvent(
                    item_id=self.message_id,
                    output_index=self.message_index,
                    content_index=0,
                    delta=chunk.text,
                    sequence_number=self._next(),
                )
            )
        for call in chunk.tool_calls or []:
            item = tr.function_call_item(call)
            index = len(self.slots)
            self.slots.append(item)
            started = item.model_copy(update={"arguments": "", "status": "in_progress"})
            assert item.id is not None
            events.append(self._item("response.output_item.added", index, started))
            events.append(
                r.ResponseFunctionCallArgumentsDeltaEvent(
                    item_id=item.id, output_index=index, delta=item.arguments, sequence_number=self._next()
                )
            )
            events.append(
                r.ResponseFunctionCallArgumentsDoneEvent(
                    item_id=item.id,
                    output_index=index,
                    arguments=item.arguments,
                    sequence_number=self._next(),
                )
            )
            events.append(self._item("response.output_item.done", index, item))
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
            self.usage = chunk.usage
        return events

    def close_message(self) -> list[r.ResponseStreamEvent]:
        """Finishes the message item (an empty one when the model said nothing and called nothing)."""
        events: list[r.ResponseStreamEvent] = []
        if self.message_index is None:
            if self.slots:
                return events
            events.extend(self._open_message())
        assert self.message_index is not None
        index, text = self.message_index, "".join(self.text)
        events.append(
            r.ResponseOutputTextDoneEvent(
                item_id=self.message_id,
                output_index=index,
                content_index=0,
                text=text,
                sequence_number=self._next(),
            )
        )
        events.append(self._part("response.content_part.done", index, text))
        done = tr.message_item(text, item_id=self.message_id, status=_status(self.finish_reason))
        self.slots[index] = done
        events.append(self._item("response.output_item.done", index, done))
        return events
