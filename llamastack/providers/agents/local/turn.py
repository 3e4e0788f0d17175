"""One turn of the agent loop, step by step: shields in, memory retrieval, then inference and tools
(server-side, or handed to the client) up to max_infer_iters, shields out, finish.

Every step goes through `StepEvents`: its start, progress and complete events, and its record on
the turn. The turn record is written after each step; when the turn comes to rest (completed, or
waiting for client tool answers) the store also keeps its messages as the session's history.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from llamastack.stack.apis import agents as a
from llamastack.stack.apis.common import TextContentItem, content_to_text
from llamastack.stack.apis.inference import native as n
from llamastack.stack.apis.inference.core import ChatRequest, ToolOptions
from llamastack.stack.apis.safety import Safety
from llamastack.stack.apis.vector_io import RAGQueryConfig
from llamastack.stack.errors import BadRequestError
from llamastack.stack.translate import native as tn

from .store import SessionRecord, TurnRecord
from .toolgroups import RAG_GROUP, TurnTools, entry_args

if TYPE_CHECKING:
    from .provider import LocalAgents

Chunk = a.AgentTurnResponseStreamChunk

_STEP_MODELS: dict[a.StepType, type[Any]] = {
    a.StepType.inference: a.InferenceStep,
    a.StepType.tool_execution: a.ToolExecutionStep,
    a.StepType.shield_call: a.ShieldCallStep,
    a.StepType.memory_retrieval: a.MemoryRetrievalStep,
}


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def chunk(payload: Any) -> Chunk:
    return a.AgentTurnResponseStreamChunk(event=a.AgentTurnResponseEvent(payload=payload))


def no_shields_error() -> BadRequestError:
    return BadRequestError("This server has no safety provider, so agents cannot use shields.")


class StepEvents:
    """One step of a turn: its events, and its record on the turn once complete."""

    def __init__(self, turn: a.Turn, kind: a.StepType) -> None:
        self.turn = turn
        self.kind = kind
        self.step_id = new_id()
        self.started_at = now()

    def start(self) -> Chunk:
        return chunk(a.StepStartPayload(step_type=self.kind, step_id=self.step_id))

    def progress(self, delta: n.ContentDelta) -> Chunk:
        return chunk(a.StepProgressPayload(step_type=self.kind, step_id=self.step_id, delta=delta))

    def complete(self, **details: Any) -> Chunk:
        """Records the step (its kind's fields in `details`) on the turn; the step_complete event."""
        step = _STEP_MODELS[self.kind](
            turn_id=self.turn.turn_id,
            step_id=self.step_id,
            started_at=self.started_at,
            completed_at=now(),
            **details,
        )
        self.turn.steps.append(step)
        return chunk(a.StepCompletePayload(step_type=self.kind, step_id=self.step_id, step_details=step))


class TurnRunner:
    """Runs a turn from its start (`first`) or from the client's tool answers, yielding its events."""

    def __init__(
        self,
        agents: LocalAgents,
        agent: a.Agent,
        session: SessionRecord,
        record: TurnRecord,
        tools: TurnTools,
        tool_config: n.ToolConfig | None,
        *,
        first: bool,
        resumed: Chunk | None = None,
    ) -> None:
        self.agents = agents
        self.agent = agent
        self.config = agent.agent_config
        self.session = session
        self.record = record
        self.turn = record.turn
        self.tools = tools
        self.tool_config = tool_config
        self.first = first
        self.resumed = resumed  # the step_complete event of the client's tool answers
        self.history: list[n.Message] = []

    async def run(self) -> AsyncIterator[Chunk]:
        yield chunk(a.TurnStartPayload(turn_id=self.turn.turn_id))
        if self.resumed is not None:
            yield self.resumed
        self.history = await self.agents.store.history_before(self.session, self.turn.turn_id)
        if self.first and self.config.input_shields:
            async for event in self.shield_calls(self.config.input_shields, self.record.messages):
                yield event
            if self.turn.completed_at is not None:
                return
        if self.first and self.agents.config.rag_mode == "memory_retrieval":
            async for event in self.memory_retrieval():
                yield event
        max_iters = self.config.max_infer_iters or 10
        while True:
            if self.record.iterations >= max_iters:
                async for event in self.finish(n.StopReason.out_of_tokens):
                    yield event
                return
            self.record.iterations += 1
            async for event in self.inference():
                yield event
            message = self.turn.output_message
            if not message.tool_calls:
                if self.config.output_shields:
                    conversation = [*self.history, *self.record.messages]
                    async for event in self.shield_calls(self.config.output_shields, conversation):
                        yield event
                    if self.turn.completed_at is not None:
                        return
                async for event in self.finish(message.stop_reason):
                    yield event
                return
            # Server tools run first; then the turn waits for the client's, if the model called any.
            for call in [c for c in message.tool_calls if c.tool_name not in self.tools.client]:
                async for event in self.tool_execution(call):
                    yield event
            pending = [c for c in message.tool_calls if c.tool_name in self.tools.client]
            if pending:
                async for event in self.await_client_tools(message, pending):
                    yield event
                return

    # --- the steps -----------------------------------------------------------------------------

    async def shield_calls(self, shields: list[str], messages: list[n.Message]) -> AsyncIterator[Chunk]:
        """One shield_call step per shield; the first violation ends the turn with its message
        (the caller sees turn.completed_at set)."""
        safety: Safety | None = self.agents.safety
        if safety is None:
            raise no_shields_error()
        for shield_id in shields:
            step = StepEvents(self.turn, a.StepType.shield_call)
            yield step.start()
            result = await safety.run_shield(shield_id, messages, {})
            yield step.complete(violation=result.violation)
            if result.violation is not None:
                answer = result.violation.user_message or ""
                async for event in self.finish(n.StopReason.end_of_turn, answer=answer):
                    yield event
                return

    async def memory_retrieval(self) -> AsyncIterator[Chunk]:
        """Before the first inference: searches the agent's RAG vector dbs and the session's, and adds
        what it found to the user's message as context."""
        db_ids: list[str] = []
        for entry in self.agents.turn_entries(self.record) or self.config.toolgroups or []:
            if not isinstance(entry, str) and self.agents.tools.split(entry.name)[0] == RAG_GROUP:
                db_ids += [d for d in entry_args(entry).get("vector_db_ids") or [] if d not in db_ids]
        if self.session.vector_db_id:
            db_ids.append(self.session.vector_db_id)
        if not db_ids:
            return
        query = content_to_text(self.record.messages[-1].content)
        context, inserted = None, None
        if query.strip():
            result = await self.agents.rag().query(
                query, db_ids, RAGQueryConfig(max_chunks=self.agents.config.memory_max_chunks)
            )
            context = content_to_text(result.content) if result.content else None
            inserted = result.content
        step = StepEvents(self.turn, a.StepType.memory_retrieval)
        yield step.start()
        yield step.complete(vector_db_ids=",".join(db_ids), inserted_context=inserted or "")
        last = self.record.messages[-1]
        if context and isinstance(last, n.UserMessage):
            self.record.messages[-1] = last.model_copy(update={"context": context})

    def _chat_request(self) -> ChatRequest:
        config, specs = self.config, self.tools.specs
        effective = self.tool_config or config.tool_config or n.ToolConfig()
        choice = effective.tool_choice or (config.tool_choice.value if config.tool_choice else "auto")
        prompt_format = effective.tool_prompt_format or config.tool_prompt_format
        # A required/named tool is forced on the first inference only, so a turn cannot loop on tools.
        if not (self.record.iterations == 1 and self.first):
            choice = "auto" if choice != "none" else "none"
        messages = [n.SystemMessage(content=config.instructions), *self.history, *self.record.messages]
        request = ChatRequest(
            messages=tn.messages_from_native(messages),
            sampling=tn.sampling_from_native(config.sampling_params, None),
            tools=ToolOptions(
                tools=list(specs.values()),
                choice=choice,
                prompt_format=prompt_format.value if prompt_format else None,
            )
            if specs
            else None,
        )
        if config.response_format is not None and not specs:
            request.json_schema, request.grammar = tn.response_format_to_core(config.response_format)
        return request

    async def inference(self) -> AsyncIterator[Chunk]:
        """One inference step, streamed; its message becomes the turn's output so far."""
        request = self._chat_request()
        step = StepEvents(self.turn, a.StepType.inference)
        yield step.start()
        text, calls, finish, eom = "", [], None, False
        async for part in self.agents.inference.chat_stream(self.config.model, request):
            for delta in tn.chat_stream_chunks(part):
                if delta.event.event_type == n.ChatCompletionResponseEventType.progress:
                    yield step.progress(delta.event.delta)
            text += part.text
            calls += part.tool_calls or []
            finish = part.finish_reason or finish
            eom = eom or part.end_of_message
        message = n.CompletionMessage(
            content=text if not calls else "",
            stop_reason=tn.stop_reason(finish, eom),
            tool_calls=[tn.tool_call_to_native(c) for c in calls],
        )
        self.turn.output_message = message
        self.record.messages.append(message)
        yield step.complete(model_response=message)
        await self.agents.store.put_turn(self.record)

    async def tool_execution(self, call: n.ToolCall) -> AsyncIterator[Chunk]:
        """One server-side tool call: the call in progress, then its response."""
        step = StepEvents(self.turn, a.StepType.tool_execution)
        yield step.start()
        yield step.progress(n.ToolCallDelta(tool_call=call, parse_status=n.ToolCallParseStatus.in_progress))
        response = await self.agents._execute(call, self.tools.specs, self.tools.args)
        self.record.messages.append(n.ToolResponseMessage(call_id=response.call_id, content=response.content))
        yield step.complete(tool_calls=[call], tool_responses=[response])
        await self.agents.store.put_turn(self.record)

    async def await_client_tools(
        self, message: n.CompletionMessage, pending: list[n.ToolCall]
    ) -> AsyncIterator[Chunk]:
        """The turn waits for the client's answers to its tools' calls (resume_turn)."""
        self.record.awaiting = [c.call_id for c in pending]
        # The client is shown only the calls it has to answer.
        self.turn.output_message = message.model_copy(
            update={"tool_calls": pending, "stop_reason": n.StopReason.end_of_message}
        )
        await self.agents.store.turn_at_rest(self.agent.agent_id, self.record)
        yield chunk(a.TurnAwaitingInputPayload(turn=self.turn))

    async def finish(self, stop_reason: n.StopReason, *, answer: str | None = None) -> AsyncIterator[Chunk]:
        """Completes the turn: with `answer` (a shield's) as its output message, else with the last
        inference's and `stop_reason`; tool attachments become the turn's."""
        turn = self.turn
        if answer is not None:
            turn.output_message = n.CompletionMessage(content=answer, stop_reason=stop_reason)
            self.record.messages.append(turn.output_message)
        else:
            turn.output_message = turn.output_message.model_copy(update={"stop_reason": stop_reason})
        turn.completed_at = now()
        attachments = [
            a.Attachment(
                content=TextContentItem(text=item.get("filename", "")),
                mime_type=item.get("mime_type", "application/octet-stream"),
            )
            for step in turn.steps
            if isinstance(step, a.ToolExecutionStep)
            for response in step.tool_responses
            for item in (response.metadata or {}).get("attachments", []) or []
        ]
        turn.output_attachments = attachments or None
        await self.agents.store.turn_at_rest(self.agent.agent_id, self.record)
        yield chunk(a.TurnCompletePayload(turn=turn))
