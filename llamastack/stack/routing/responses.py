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
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

from ..access import OwnerIndex
from ..apis import responses as r
from ..apis.common import Order
from ..apis.inference import native as n
from ..apis.inference.core import (
    ChatMessage,
    ChatRequest,
    GenerationChunk,
    GenerationResult,
    Inference,
    ToolCallOut,
    Usage,
)
from ..apis.safety import CANNED_RESPONSE, Safety, Shields
from ..errors import BadRequestError, ContextLengthExceededError, NotFoundError, ServerBusyError, StackError
from ..pagination import paginate
from ..storage.kvstore import KVStore
from ..storage.records import RecordStore
from ..translate import responses as tr
from .responses_tools import RequestTools, ResponseTools, ServerTool

log = logging.getLogger(__name__)

_KIND = "openai_response"
MAX_LIST_LIMIT = 100
MAX_METADATA = 16


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
    """One request, prepared: every input item, the conversation the model reads, its tools, and the
    response's fixed fields."""

    def __init__(
        self,
        request: r.CreateOpenaiResponseRequest,
        items: list[r.ResponseInputItem],
        tools: RequestTools | None,
        new_items: list[r.ResponseInputItem],
    ) -> None:
        self.request = request
        self.items = items
        self.new_items = new_items  # this request's own input (what input shields check)
        self.tools = tools
        # Time-ordered ids: responses made in the same second still list in the order they were made.
        self.id = f"resp_{time.time_ns():016x}{uuid.uuid4().hex[:16]}"
        self.created_at = int(time.time())
        self.messages = tr.chat_messages(items, request.instructions)
        self.sampling = tr.sampling(request)
        self.json_schema = tr.json_schema(request.text)
        self.include_results = "file_search_call.results" in (request.include or [])
        # MCP calls the client has answered (approval request, approved?, reason), run or refused first.
        self.approvals: list[tuple[r.ResponseMCPApprovalRequest, bool, str | None]] = []
        self.max_iters = request.max_infer_iters or 10

    @property
    def server_tools(self) -> dict[str, ServerTool]:
        return self.tools.server if self.tools is not None else {}

    def chat(self, iteration: int) -> ChatRequest:
        last = iteration == self.max_iters - 1
        return ChatRequest(
            messages=list(self.messages),
            sampling=self.sampling,
            json_schema=self.json_schema,
            tools=self.tools.options(iteration, last=last) if self.tools is not None else None,
        )

    def truncate(self) -> bool:
        """truncation: auto drops the oldest items (keeping instructions) until the conversation starts
        with a user message again; False when nothing more can go."""
        first = 1 if self.messages and self.messages[0].role == "system" else 0
        rest = self.messages[first:]
        if len(rest) <= 1:
            return False
        rest = rest[1:]
        while len(rest) > 1 and rest[0].role != "user":
            rest = rest[1:]
        self.messages = [*self.messages[:first], *rest]
        return True

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
            parallel_tool_calls=(
                bool(req.tools) if req.parallel_tool_calls is None else bool(req.parallel_tool_calls)
            ),
            previous_response_id=req.previous_response_id,
            temperature=req.temperature,
            top_p=req.top_p,
            text=req.text or r.ResponseText(format=r.ResponseTextFormat(type="text")),
            truncation=req.truncation or "disabled",
            user=req.user,
            instructions=req.instructions,
            usage=_usage(usage),
            incomplete_details=r.IncompleteDetails(reason="max_output_tokens")
            if status == "incomplete"
            else None,
            metadata=req.metadata,
            max_output_tokens=req.max_output_tokens,
        )


def _status(finish_reason: str | None) -> r.ResponseStatus:
    return "incomplete" if finish_reason == "length" else "completed"


def _check_request(request: r.CreateOpenaiResponseRequest) -> None:
    unknown = [x for x in request.include or [] if x not in r.INCLUDABLE]
    if unknown:
        raise BadRequestError(
            f"include: {', '.join(repr(x[:80]) for x in unknown)} cannot be included here; this server "
            f"offers {', '.join(sorted(r.INCLUDABLE))}."
        )
    metadata = request.metadata or {}
    if len(metadata) > MAX_METADATA:
        raise BadRequestError(f"metadata holds at most {MAX_METADATA} pairs, got {len(metadata)}.")
    for key, value in metadata.items():
        if len(key) > 64 or len(value) > 512:
            raise BadRequestError(
                f"metadata['{key[:64]}']: keys are at most 64 characters and values at most 512."
            )


def _approvals(
    history: list[r.ResponseInputItem],
    new_items: list[r.ResponseInputItem],
    server: Mapping[str, ServerTool],
) -> list[tuple[r.ResponseMCPApprovalRequest, bool, str | None]]:
    """The approval responses of this request, each with the request it answers (from the chain)."""
    asked = {x.id: x for x in history if isinstance(x, r.ResponseMCPApprovalRequest)}
    found = []
    for i, item in enumerate(new_items):
        if not isinstance(item, r.ResponseMCPApprovalResponse):
            continue
        request = asked.get(item.approval_request_id)
        if request is None:
            raise BadRequestError(
                f"input[{i}].approval_request_id '{item.approval_request_id[:80]}' is not an "
                "mcp_approval_request of the previous response; send previous_response_id of the "
                "response that asked."
            )
        tool = server.get(request.name)
        if tool is None or tool.kind != "mcp" or tool.server_label != request.server_label:
            raise BadRequestError(
                f"input[{i}] answers a call of '{request.name}' on MCP server '{request.server_label}'; "
                "send that mcp tool in tools again so the call can run."
            )
        found.append((request, bool(item.approve), item.reason))
    return found


def _chunk_of(result: GenerationResult) -> GenerationChunk:
    return GenerationChunk(
        text=result.text,
        tool_calls=list(result.tool_calls) or None,
        finish_reason=result.finish_reason,
        usage=result.usage,
    )


class ResponsesRouter:
    """Implements the ``Responses`` Protocol."""

    def __init__(
        self,
        inference: Inference,
        store: KVStore,
        *,
        tools: ResponseTools | None = None,
        safety: Safety | None = None,
        shields: Shields | None = None,
        input_shields: Sequence[str] = (),
        output_shields: Sequence[str] = (),
    ) -> None:
        self.inference = inference
        self.tools = tools or ResponseTools()
        self.safety = safety
        self.shields = shields
        # The run config's shields, run for every response (before a request's own guardrails).
        self.input_shields = list(input_shields)
        self.output_shields = list(output_shields)
        self.records = RecordStore(store, r.OpenAIResponseObjectWithInput, kind=_KIND, label="response")
        self.owners = OwnerIndex(store, _KIND)

    # --- create --------------------------------------------------------------------------------

    async def _stored(self, response_id: str) -> r.OpenAIResponseObjectWithInput:
        await self.owners.check(response_id, lambda: _not_found(response_id))
        return await self.records.require(response_id, lambda: _not_found(response_id))

    async def _turn(self, request: r.CreateOpenaiResponseRequest) -> _Turn:
        _check_request(request)
        new_items = tr.input_items(request.input)
        history: list[r.ResponseInputItem] = []
        if request.previous_response_id is not None:
            previous = await self._stored(request.previous_response_id)
            history = [*previous.input, *previous.output]
        for shield_id in request.guardrails or []:
            if self.safety is None or self.shields is None:
                raise BadRequestError(
                    "guardrails: this server has no safety provider, so shields cannot run; add one to "
                    "the run config or leave guardrails out."
                )
            await self.shields.get_shield(shield_id)  # 404 naming it
        tools = await self.tools.prepare(
            request.tools, request.tool_choice, parallel=request.parallel_tool_calls
        )
        turn = _Turn(request, [*history, *new_items], tools, new_items)
        turn.approvals = _approvals(history, new_items, turn.server_tools)
        return turn

    async def _save(self, turn: _Turn, response: r.OpenAIResponseObject) -> None:
        if turn.request.store is False:
            return
        record = r.OpenAIResponseObjectWithInput(**dict(response), input=turn.items)
        await self.owners.claim(record.id)  # before the record: never an unowned record
        await self.records.put(record.id, record)

    async def create(self, request: r.CreateOpenaiResponseRequest) -> r.OpenAIResponseObject:
        turn = await self._turn(request)
        final: r.OpenAIResponseObject | None = None
        async for event in self._run(turn, _StreamEvents(turn), streamed=False):
            if isinstance(event, r.ResponseLifecycleEvent):
                final = event.response
        assert final is not None
        return final

    async def create_stream(
        self, request: r.CreateOpenaiResponseRequest
    ) -> AsyncIterator[r.ResponseStreamEvent]:
        turn = await self._turn(request)
        events = _StreamEvents(turn)
        run = self._run(turn, events, streamed=True)
        # Until the model has said something (or a first item is done), errors keep their HTTP status:
        # a full queue, an engine error, a web search without its API key.
        ahead: list[r.ResponseStreamEvent] = []
        try:
            async for event in run:
                ahead.append(event)
                if event.type in _STARTED:
                    break
        except BaseException:
            await run.aclose()
            raise
        return self._guarded(turn, events, ahead, run)

    async def _guarded(
        self,
        turn: _Turn,
        events: _StreamEvents,
        ahead: list[r.ResponseStreamEvent],
        run: AsyncGenerator[r.ResponseStreamEvent, None],
    ) -> AsyncIterator[r.ResponseStreamEvent]:
        try:
            for event in ahead:
                yield event
            async for event in run:
                yield event
        except Exception as exc:
            # The stream has started, so the status cannot change: OpenAI's response.failed, then the end.
            yield events.lifecycle(
                "response.failed", turn.response("failed", events.output, error=_error_of(exc))
            )
        finally:
            await run.aclose()

    async def _run(
        self, turn: _Turn, events: _StreamEvents, *, streamed: bool
    ) -> AsyncGenerator[r.ResponseStreamEvent, None]:
        """The response's events: the model's answers and the server-side tools it calls, in turns,
        until it answers in words, calls a client function, or max_infer_iters is reached."""
        yield events.lifecycle("response.created", turn.response("in_progress", []))
        yield events.lifecycle("response.in_progress", turn.response("in_progress", []))
        requested = turn.request.guardrails or []
        input_shields = [*self.input_shields, *requested]
        output_shields = [*self.output_shields, *requested]
        blocked = await self._shields(input_shields, self._input_for_shields(turn)) if input_shields else None
        if blocked is not None:
            for event in events.whole_message(blocked, "completed"):
                yield event
            yield await self._finish(turn, events)
            return
        for listing in turn.tools.listings if turn.tools is not None else []:
            for event in events.listing(listing):
                yield event
        for asked, approved, reason in turn.approvals:
            call = ToolCallOut(id=asked.id, name=asked.name, arguments=asked.arguments)
            if approved:
                async for event in self._call(turn, events, call):
                    yield event
            else:
                tr.add_tool_call(turn.messages, call.id, call.name, call.arguments)
                refusal = "The user did not approve this call" + (f": {reason}" if reason else ".")
                turn.messages.append(ChatMessage("tool", refusal, tool_call_id=call.id))
        for iteration in range(turn.max_iters):
            request = turn.chat(iteration)
            if streamed and not output_shields:  # output shields see a message before anyone else
                chunks = self._stream(turn, request)
                try:
                    async for chunk in chunks:
                        for event in events.chunk(chunk, turn.server_tools):
                            yield event
                finally:
                    await chunks.aclose()
                for event in events.close_message():
                    yield event
            else:
                result = await self._generate(turn, request)
                if output_shields and result.text:
                    said = [*self._input_for_shields(turn), n.CompletionMessage(content=result.text)]
                    blocked = await self._shields(output_shields, said)
                    if blocked is not None:
                        for event in events.whole_message(blocked, "completed"):
                            yield event
                        yield await self._finish(turn, events)
                        return
                for event in events.chunk(_chunk_of(result), turn.server_tools):
                    yield event
                for event in events.close_message():
                    yield event
            calls = events.take_server_calls()
            if not calls:
                break
            waiting = [c for c in calls if turn.server_tools[c.name].needs_approval]
            for call in calls:
                if call not in waiting:
                    async for event in self._call(turn, events, call):
                        yield event
            for call in waiting:  # the client approves (or not) in a follow-up; the response ends here
                for event in events.approval_request(call, turn.server_tools[call.name].server_label):
                    yield event
            if waiting or events.client_called or events.finish_reason == "length":
                break
        events.ensure_output()
        for event in events.close_message():
            yield event
        yield await self._finish(turn, events)

    async def _finish(self, turn: _Turn, events: _StreamEvents) -> r.ResponseLifecycleEvent:
        response = turn.response(_status(events.finish_reason), events.output, usage=events.usage)
        await self._save(turn, response)
        terminal = "response.completed" if response.status == "completed" else "response.incomplete"
        return events.lifecycle(terminal, response)

    async def _call(
        self, turn: _Turn, events: _StreamEvents, call: ToolCallOut
    ) -> AsyncIterator[r.ResponseStreamEvent]:
        """Runs one server-side tool call, with OpenAI's events for it, and shows the model the result."""
        tool = turn.server_tools[call.name]
        prefix = {"file_search": "fs", "web_search": "ws", "mcp": "mcp"}[tool.kind]
        item_id = tr.new_id(prefix)
        index = events.open_slot()
        progress = f"response.{tool.kind}_call"
        yield events.item_event("response.output_item.added", index, self.tools.started(call, tool, item_id))
        yield events.progress(f"{progress}.in_progress", item_id, index)
        if tool.kind == "mcp":
            for event in events.mcp_arguments(item_id, index, call.arguments):
                yield event
        else:
            yield events.progress(f"{progress}.searching", item_id, index)
        result = await self.tools.run(call, tool, item_id, include_results=turn.include_results)
        ending = "failed" if result.failed and tool.kind == "mcp" else "completed"
        yield events.progress(f"{progress}.{ending}", item_id, index)
        events.slots[index] = result.item
        yield events.item_event("response.output_item.done", index, result.item)
        tr.add_tool_call(turn.messages, call.id, call.name, call.arguments)
        turn.messages.append(ChatMessage("tool", result.text, tool_call_id=call.id))

    async def _generate(self, turn: _Turn, request: ChatRequest) -> GenerationResult:
        while True:
            try:
                return await self.inference.chat(turn.request.model, request)
            except ContextLengthExceededError:
                if turn.request.truncation != "auto" or not turn.truncate():
                    raise
                request.messages = list(turn.messages)

    async def _stream(self, turn: _Turn, request: ChatRequest) -> AsyncGenerator[GenerationChunk, None]:
        while True:
            stream = self.inference.chat_stream(turn.request.model, request)
            try:
                first = await anext(stream)
                break
            except ContextLengthExceededError:
                if turn.request.truncation != "auto" or not turn.truncate():
                    raise
                request.messages = list(turn.messages)
        try:
            chunk: GenerationChunk | None = first
            while chunk is not None:
                yield chunk
                chunk = await anext(stream, None)
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                await closer()

    # --- guardrails ----------------------------------------------------------------------------

    @staticmethod
    def _input_for_shields(turn: _Turn) -> list[n.Message]:
        said: list[n.Message] = []
        for message in tr.chat_messages(turn.new_items, None):
            if message.role == "user" and message.content:
                said.append(n.UserMessage(content=message.content))
        return said or [n.UserMessage(content="")]

    async def _shields(self, shield_ids: list[str], messages: list[n.Message]) -> str | None:
        """The first violation's message, or None when every shield lets the messages through."""
        assert self.safety is not None
        for shield_id in shield_ids:
            result = await self.safety.run_shield(shield_id, messages, {})
            if result.violation is not None:
                return result.violation.user_message or CANNED_RESPONSE
        return None

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


_STARTED = frozenset(
    {"response.output_text.delta", "response.output_item.done", "response.completed", "response.incomplete"}
)


class _StreamEvents:
    """Turns the model's chunks and the server's tool calls into OpenAI's response events, numbered in
    order, and collects the finished output items."""

    def __init__(self, turn: _Turn) -> None:
        self.turn = turn
        self.sequence = 0
        self.slots: list[r.ResponseOutputItem | None] = []  # by output_index; None while open
        self.message_index: int | None = None
        self.message_id = tr.new_id("msg")
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.server_calls: list[ToolCallOut] = []
        self.client_called = False
        self.empty_wanted = False

    @property
    def output(self) -> list[r.ResponseOutputItem]:
        return [item for item in self.slots if item is not None]

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence - 1

    def open_slot(self) -> int:
        self.slots.append(None)
        return len(self.slots) - 1

    def lifecycle(self, kind: Any, response: r.OpenAIResponseObject) -> r.ResponseLifecycleEvent:
        return r.ResponseLifecycleEvent(type=kind, response=response, sequence_number=self._next())

    def item_event(self, kind: Any, index: int, item: r.ResponseOutputItem) -> r.ResponseOutputItemEvent:
        return r.ResponseOutputItemEvent(
            type=kind, response_id=self.turn.id, output_index=index, item=item, sequence_number=self._next()
        )

    def progress(self, kind: Any, item_id: str, index: int) -> r.ResponseToolCallProgressEvent:
        return r.ResponseToolCallProgressEvent(
            type=kind, item_id=item_id, output_index=index, sequence_number=self._next()
        )

    def mcp_arguments(self, item_id: str, index: int, arguments: str) -> list[r.ResponseStreamEvent]:
        """The call's arguments, as one delta: the engine delivers tool calls whole."""
        return [
            r.ResponseMCPCallArgumentsDeltaEvent(
                item_id=item_id, output_index=index, delta=arguments, sequence_number=self._next()
            ),
            r.ResponseMCPCallArgumentsDoneEvent(
                item_id=item_id, output_index=index, arguments=arguments, sequence_number=self._next()
            ),
        ]

    def approval_request(self, call: ToolCallOut, server_label: str) -> list[r.ResponseStreamEvent]:
        item = r.ResponseMCPApprovalRequest(
            id=tr.new_id("mcpr"), server_label=server_label, name=call.name, arguments=call.arguments
        )
        index = self.open_slot()
        self.slots[index] = item
        return [
            self.item_event("response.output_item.added", index, item),
            self.item_event("response.output_item.done", index, item),
        ]

    def listing(self, item: r.ResponseMCPListTools) -> list[r.ResponseStreamEvent]:
        """An MCP server's tool list (listed before the model ran), as OpenAI streams it."""
        index = self.open_slot()
        self.slots[index] = item
        return [
            self.item_event("response.output_item.added", index, item.model_copy(update={"tools": []})),
            self.progress("response.mcp_list_tools.in_progress", item.id, index),
            self.progress("response.mcp_list_tools.completed", item.id, index),
            self.item_event("response.output_item.done", index, item),
        ]

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
        index = self.message_index = self.open_slot()
        added = r.ResponseMessage(role="assistant", content=[], id=self.message_id, status="in_progress")
        return [
            self.item_event("response.output_item.added", index, added),
            self._part("response.content_part.added", index, ""),
        ]

    def _delta(self, text: str) -> r.ResponseOutputTextDeltaEvent:
        assert self.message_index is not None
        self.text.append(text)
        return r.ResponseOutputTextDeltaEvent(
            item_id=self.message_id,
            output_index=self.message_index,
            content_index=0,
            delta=text,
            sequence_number=self._next(),
        )

    def whole_message(self, text: str, status: str) -> list[r.ResponseStreamEvent]:
        """A message that is known whole (a shield's answer)."""
        events = self._open_message() if self.message_index is None else []
        return [*events, self._delta(text), *self.close_message(status=status)]

    def chunk(self, chunk: GenerationChunk, server: Mapping[str, object]) -> list[r.ResponseStreamEvent]:
        events: list[r.ResponseStreamEvent] = []
        if chunk.text:
            if self.message_index is None:
                events.extend(self._open_message())
            events.append(self._delta(chunk.text))
        for call in chunk.tool_calls or []:
            if call.name in server:
                self.server_calls.append(call)  # run once this inference is done
                continue
            self.client_called = True
            item = tr.function_call_item(call)
            index = self.open_slot()
            self.slots[index] = item
            started = item.model_copy(update={"arguments": "", "status": "in_progress"})
            assert item.id is not None
            events.append(self.item_event("response.output_item.added", index, started))
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
            events.append(self.item_event("response.output_item.done", index, item))
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
            if chunk.usage is not None:
                before = self.usage or Usage(prompt_tokens=0, completion_tokens=0)  # over every inference
                self.usage = Usage(
                    prompt_tokens=chunk.usage.prompt_tokens + before.prompt_tokens,
                    completion_tokens=chunk.usage.completion_tokens + before.completion_tokens,
                )
        return events

    def take_server_calls(self) -> list[ToolCallOut]:
        calls, self.server_calls = self.server_calls, []
        return calls

    def ensure_output(self) -> None:
        """A response says something: an empty message when the model said nothing and called nothing."""
        if not self.slots and self.message_index is None:
            self.empty_wanted = True

    def close_message(self, *, status: str | None = None) -> list[r.ResponseStreamEvent]:
        """Finishes the open message item, if any (or the empty one ensure_output asked for)."""
        events: list[r.ResponseStreamEvent] = []
        if self.message_index is None:
            if not self.empty_wanted:
                return events
            self.empty_wanted = False
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
        done = tr.message_item(text, item_id=self.message_id, status=status or _status(self.finish_reason))
        self.slots[index] = done
        events.append(self.item_event("response.output_item.done", index, done))
        # The next message (after server-side tools ran) is a new item.
        self.message_index, self.message_id, self.text = None, tr.new_id("msg"), []
        return events
