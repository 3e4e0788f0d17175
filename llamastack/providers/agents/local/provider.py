"""The agent loop: shields in, inference, tools (server-side, or handed to the client), shields out,
repeated up to max_infer_iters; every step streamed and stored.

RAG works as a tool: ``builtin::rag`` (or ``builtin::rag/knowledge_search``) offers the model
``knowledge_search`` over the vector dbs in the group's args, and over the session's own vector db
where documents attached to turns go. With ``rag_mode: memory_retrieval`` the agent instead
retrieves before the turn's first inference and adds the context to the user message."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from llamastack.stack.apis import agents as a
from llamastack.stack.apis.common import TextContentItem, content_to_text
from llamastack.stack.apis.inference import native as n
from llamastack.stack.apis.inference.core import ChatRequest, ToolOptions, ToolSpec
from llamastack.stack.apis.models import ModelType
from llamastack.stack.apis.tools import RAGToolRuntime
from llamastack.stack.apis.vector_io import RAGDocument, RAGQueryConfig
from llamastack.stack.datatypes import Api, ProviderDeps, required
from llamastack.stack.errors import BadRequestError, StackError
from llamastack.stack.storage.kvstore import SqliteKVStore
from llamastack.stack.translate import native as tn

from .config import LocalAgentsConfig
from .store import AgentStore, SessionRecord, TurnRecord
from .toolgroups import KNOWLEDGE_SEARCH, RAG_GROUP, ToolResolver, TurnTools, entry_args

# Which vector dbs knowledge_search searches is the agent's configuration, never the model's choice
# (a document's text could otherwise steer the search elsewhere).
_AGENT_ONLY_ARGS = {KNOWLEDGE_SEARCH: ("vector_db_ids", "query_config")}


def _now() -> datetime:
    return datetime.now(UTC)


def _id() -> str:
    return uuid.uuid4().hex


def _chunk(payload: Any) -> a.AgentTurnResponseStreamChunk:
    return a.AgentTurnResponseStreamChunk(event=a.AgentTurnResponseEvent(payload=payload))


def _check_arguments(tool: ToolSpec, arguments: dict[str, Any]) -> str | None:
    """What is wrong with the model's arguments for a tool, or None."""
    schema = tool.parameters
    missing = [name for name in schema.get("required", []) if name not in arguments]
    if missing:
        return f"missing required argument(s): {', '.join(missing)}"
    try:
        import jsonschema
    except ImportError:
        return None
    try:
        jsonschema.validate(arguments, {k: v for k, v in schema.items() if not k.startswith("x-")})
    except jsonschema.ValidationError as exc:
        return exc.message
    except jsonschema.SchemaError:
        return None
    return None


class LocalAgents:
    def __init__(self, config: LocalAgentsConfig, deps: ProviderDeps) -> None:
        self.config = config
        self.inference = required(deps.inference, Api.inference)
        self.models = required(deps.models, Api.inference)
        self.tool_runtime = required(deps.tool_runtime, Api.tool_runtime)
        self.tool_groups = required(deps.tool_groups, Api.tool_runtime)
        self.rag_tool = deps.rag_tool
        self.safety = deps.safety
        self.shields = deps.shields
        self.vector_dbs = deps.vector_dbs
        self.store = AgentStore(SqliteKVStore(config.db_path))
        self.tools = ToolResolver(self.tool_groups)

    def _rag(self) -> RAGToolRuntime:
        if self.rag_tool is None:
            raise BadRequestError(
                "No RAG tool provider is configured (add inline::rag-runtime to tool_runtime)."
            )
        return self.rag_tool

    async def initialize(self) -> None:
        await self.store.recover()

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def shutdown(self) -> None:
        await self.store.kv.close()

    # --- agents and sessions -------------------------------------------------------------------

    async def create_agent(self, config: a.AgentConfig) -> a.AgentCreateResponse:
        await self.models.get_model(config.model)  # 404 for an unknown model
        for shield_id in [*(config.input_shields or []), *(config.output_shields or [])]:
            if self.shields is None:
                raise BadRequestError("This server has no safety provider, so agents cannot use shields.")
            await self.shields.get_shield(shield_id)
        await self.tools.check(config.toolgroups or [])
        agent = a.Agent(agent_id=_id(), agent_config=config, created_at=_now())
        await self.store.create_agent(agent)
        return a.AgentCreateResponse(agent_id=agent.agent_id)

    async def create_session(self, agent_id: str, name: str) -> a.AgentSessionCreateResponse:
        await self.store.get_agent(agent_id)
        record = SessionRecord(
            session_id=_id(), session_name=name, agent_id=agent_id, started_at=_now().isoformat()
        )
        await self.store.put_session(record)
        return a.AgentSessionCreateResponse(session_id=record.session_id)

    # --- turns ---------------------------------------------------------------------------------

    async def create_turn(
        self, agent_id: str, session_id: str, request: a.CreateAgentTurnRequest
    ) -> AsyncIterator[a.AgentTurnResponseStreamChunk]:
        agent = await self.store.get_agent(agent_id)
        session = await self.store.get_session(agent_id, session_id)
        await self.tools.check(request.toolgroups or [])
        turn = a.Turn(
            turn_id=_id(),
            session_id=session_id,
            input_messages=request.messages,
            steps=[],
            output_message=n.CompletionMessage(content="", stop_reason=n.StopReason.end_of_turn),
            started_at=_now(),
        )
        record = TurnRecord(
            turn=turn,
            messages=list(request.messages),
            toolgroups=[g if isinstance(g, str) else g.model_dump() for g in request.toolgroups or []],
        )
        tools = await self._turn_tools(agent, session, record)
        if request.documents:
            tool_mode = self.config.rag_mode == "tool"
            if tool_mode:
                await self._check_documents_searchable(tools)
            await self._index_documents(agent, session, request.documents)
            if tool_mode and session.vector_db_id:
                await self.tools.add_knowledge_search(tools, session.vector_db_id)
        session.turn_ids.append(turn.turn_id)
        await self.store.put_turn(record)
        await self.store.put_session(session)
        return self._run(agent, session, record, request.tool_config, tools, first=True)

    async def resume_turn(
        self, agent_id: str, session_id: str, turn_id: str, request: a.ResumeAgentTurnRequest
    ) -> AsyncIterator[a.AgentTurnResponseStreamChunk]:
        agent = await self.store.get_agent(agent_id)
        session = await self.store.get_session(agent_id, session_id)
        record = await self.store.get_turn(session_id, turn_id)
        if not record.awaiting:
            raise BadRequestError(f"Turn '{turn_id}' is not waiting for tool responses.")
        answered = {r.call_id for r in request.tool_responses}
        if answered != set(record.awaiting):
            raise BadRequestError(
                f"Turn '{turn_id}' waits for responses to calls {sorted(record.awaiting)}; "
                f"got {sorted(answered)}."
            )
        step = a.ToolExecutionStep(
            turn_id=turn_id,
            step_id=_id(),
            started_at=_now(),
            completed_at=_now(),
            tool_calls=[c for c in record.turn.output_message.tool_calls or [] if c.call_id in answered],
            tool_responses=request.tool_responses,
        )
        record.turn.steps.append(step)
        record.messages += [
            n.ToolResponseMessage(call_id=r.call_id, content=r.content) for r in request.tool_responses
        ]
        record.awaiting = []
        tools = await self._turn_tools(agent, session, record)
        await self.store.put_turn(record)
        return self._run(agent, session, record, None, tools, first=False, resumed_step=step)

    async def _check_documents_searchable(self, tools: TurnTools) -> None:
        """Before indexing anything: the turn's documents must be reachable by knowledge_search."""
        if KNOWLEDGE_SEARCH in tools.client:
            raise BadRequestError(
                "Documents attached to a turn are searched with the knowledge_search tool, but this "
                "agent has a client tool of that name; rename the client tool."
            )
        if KNOWLEDGE_SEARCH not in tools.specs and await self.tool_groups.find_tool_group(RAG_GROUP) is None:
            raise BadRequestError(
                f"Documents attached to a turn are searched with the knowledge_search tool of "
                f"'{RAG_GROUP}', which is not registered; register it with provider rag-runtime."
            )

    async def _index_documents(
        self, agent: a.Agent, session: SessionRecord, documents: list[a.Document]
    ) -> None:
        if self.vector_dbs is None:
            raise BadRequestError("This server has no vector_io provider, so documents cannot be attached.")
        if session.vector_db_id is None:
            from llamastack.stack.apis.vector_io import RegisterVectorDbRequest

            models = [
                m for m in (await self.models.list_models()).data if m.model_type == ModelType.embedding
            ]
            if not models:
                raise BadRequestError("Attaching documents needs an embedding model; none is registered.")
            session.vector_db_id = f"session-{session.session_id}"
            await self.vector_dbs.register_vector_db(
                RegisterVectorDbRequest(
                    vector_db_id=session.vector_db_id, embedding_model=models[0].identifier
                )
            )
        rag = self._rag()
        docs = [
            RAGDocument(document_id=f"doc-{_id()}", content=d.content, mime_type=d.mime_type, metadata={})
            for d in documents
        ]
        await rag.insert(docs, session.vector_db_id, 256)

    def _turn_entries(self, record: TurnRecord) -> list[a.AgentTool]:
        return [
            g if isinstance(g, str) else a.AgentToolGroupWithArgs.model_validate(g) for g in record.toolgroups
        ]

    async def _turn_tools(self, agent: a.Agent, session: SessionRecord, record: TurnRecord) -> TurnTools:
        """The tools this turn offers; in tool mode knowledge_search also searches the session's db."""
        memory_mode = self.config.rag_mode == "memory_retrieval"
        tools = await self.tools.resolve(
            agent.agent_config.toolgroups or [],
            self._turn_entries(record),
            agent.agent_config.client_tools or [],
            skip_groups=frozenset({RAG_GROUP}) if memory_mode else frozenset(),
        )
        if session.vector_db_id and not memory_mode:
            await self.tools.add_knowledge_search(tools, session.vector_db_id)
        return tools

    async def _guard(
        self, shields: list[str], messages: list[n.Message], record: TurnRecord
    ) -> AsyncIterator[a.AgentTurnResponseStreamChunk]:
        """Runs the shields as shield_call steps; the first violation ends the turn with its message
        (the caller sees turn.completed_at set)."""
        turn = record.turn
        for shield_id in shields:
            step_id = _id()
            started = _now()
            yield _chunk(a.StepStartPayload(step_type=a.StepType.shield_call, step_id=step_id))
            result = await self.safety.run_shield(shield_id, messages, {})
            step = a.ShieldCallStep(
                turn_id=turn.turn_id,
                step_id=step_id,
                started_at=started,
                completed_at=_now(),
                violation=result.violation,
            )
            turn.steps.append(step)
            yield _chunk(
                a.StepCompletePayload(step_type=a.StepType.shield_call, step_id=step_id, step_details=step)
            )
            if result.violation is not None:
                message = result.violation.user_message or ""
                async for event in self._finish(record, message, n.StopReason.end_of_turn):
                    yield event
                return

    async def _memory(
        self, agent: a.Agent, session: SessionRecord, record: TurnRecord, query: str
    ) -> tuple[list[str], str | None, Any]:
        db_ids: list[str] = []
        turn_entries = self._turn_entries(record)
        for entry in turn_entries or agent.agent_config.toolgroups or []:
            if not isinstance(entry, str) and self.tools.split(entry.name)[0] == RAG_GROUP:
                db_ids += [d for d in entry_args(entry).get("vector_db_ids") or [] if d not in db_ids]
        if session.vector_db_id:
            db_ids.append(session.vector_db_id)
        if not db_ids or not query.strip():
            return db_ids, None, None
        result = await self._rag().query(
            query, db_ids, RAGQueryConfig(max_chunks=self.config.memory_max_chunks)
        )
        context = content_to_text(result.content) if result.content else None
        return db_ids, context, result.content

    async def _run(
        self,
        agent: a.Agent,
        session: SessionRecord,
        record: TurnRecord,
        tool_config: n.ToolConfig | None,
        tools: TurnTools,
        *,
        first: bool,
        resumed_step: a.ToolExecutionStep | None = None,
    ) -> AsyncIterator[a.AgentTurnResponseStreamChunk]:
        config = agent.agent_config
        turn = record.turn
        yield _chunk(a.TurnStartPayload(turn_id=turn.turn_id))
        if resumed_step is not None:
            yield _chunk(
                a.StepCompletePayload(
                    step_type=a.StepType.tool_execution,
                    step_id=resumed_step.step_id,
                    step_details=resumed_step,
                )
            )
        history = await self._history_before(session, turn.turn_id)
        if first and config.input_shields:
            async for event in self._guard(config.input_shields, record.messages, record):
                yield event
            if turn.completed_at is not None:
                return
        if first and self.config.rag_mode == "memory_retrieval":
            query = content_to_text(record.messages[-1].content)
            db_ids, context, inserted = await self._memory(agent, session, record, query)
            if db_ids:
                step_id = _id()
                started = _now()
                yield _chunk(a.StepStartPayload(step_type=a.StepType.memory_retrieval, step_id=step_id))
                step = a.MemoryRetrievalStep(
                    turn_id=turn.turn_id,
                    step_id=step_id,
                    started_at=started,
                    completed_at=_now(),
                    vector_db_ids=",".join(db_ids),
                    inserted_context=inserted or "",
                )
                turn.steps.append(step)
                yield _chunk(
                    a.StepCompletePayload(
                        step_type=a.StepType.memory_retrieval, step_id=step_id, step_details=step
                    )
                )
                last = record.messages[-1]
                if context and isinstance(last, n.UserMessage):
                    record.messages[-1] = last.model_copy(update={"context": context})

        specs = tools.specs
        effective = tool_config or config.tool_config or n.ToolConfig()
        choice = effective.tool_choice or (config.tool_choice.value if config.tool_choice else "auto")
        prompt_format = effective.tool_prompt_format or config.tool_prompt_format
        max_iters = config.max_infer_iters or 10
        while True:
            if record.iterations >= max_iters:
                async for e in self._finish(
                    record, turn.output_message.content, n.StopReason.out_of_tokens, keep=True
                ):
                    yield e
                return
            record.iterations += 1
            # A required/named tool is forced on the first inference only, so a turn cannot loop on tools.
            this_choice = (
                choice if record.iterations == 1 and first else ("auto" if choice != "none" else "none")
            )
            messages = [n.SystemMessage(content=config.instructions), *history, *record.messages]
            core = ChatRequest(
                messages=tn.messages_from_native(messages),
                sampling=tn.sampling_from_native(config.sampling_params, None),
                tools=ToolOptions(
                    tools=list(specs.values()),
                    choice=this_choice,
                    prompt_format=prompt_format.value if prompt_format else None,  # type: ignore[arg-type]
                )
                if specs
                else None,
            )
            if config.response_format is not None and not specs:
                core.json_schema, core.grammar = tn.response_format_to_core(config.response_format)
            step_id = _id()
            started = _now()
            yield _chunk(a.StepStartPayload(step_type=a.StepType.inference, step_id=step_id))
            text, calls, finish, eom = "", [], None, False
            async for chunk in self.inference.chat_stream(config.model, core):
                for delta in tn.chat_stream_chunks(chunk):
                    if delta.event.event_type == n.ChatCompletionResponseEventType.progress:
                        yield _chunk(
                            a.StepProgressPayload(
                                step_type=a.StepType.inference, step_id=step_id, delta=delta.event.delta
                            )
                        )
                text += chunk.text
                calls += chunk.tool_calls or []
                finish = chunk.finish_reason or finish
                eom = eom or chunk.end_of_message
            message = n.CompletionMessage(
                content=text if not calls else "",
                stop_reason=tn.stop_reason(finish, eom),
                tool_calls=[tn.tool_call_to_native(c) for c in calls],
            )
            step = a.InferenceStep(
                turn_id=turn.turn_id,
                step_id=step_id,
                started_at=started,
                completed_at=_now(),
                model_response=message,
            )
            turn.steps.append(step)
            turn.output_message = message
            record.messages.append(message)
            yield _chunk(
                a.StepCompletePayload(step_type=a.StepType.inference, step_id=step_id, step_details=step)
            )
            await self.store.put_turn(record)

            if not message.tool_calls:
                if config.output_shields:
                    messages = [*history, *record.messages]
                    async for event in self._guard(config.output_shields, messages, record):
                        yield event
                    if turn.completed_at is not None:
                        return
                async for e in self._finish(record, message.content, message.stop_reason, keep=True):
                    yield e
                return

            # Server tools run first; then the turn waits for the client's, if the model called any.
            for call in [c for c in message.tool_calls if c.tool_name not in tools.client]:
                # One tool_execution step per call: the call in progress, then its response.
                step_id = _id()
                started = _now()
                yield _chunk(a.StepStartPayload(step_type=a.StepType.tool_execution, step_id=step_id))
                yield _chunk(
                    a.StepProgressPayload(
                        step_type=a.StepType.tool_execution,
                        step_id=step_id,
                        delta=n.ToolCallDelta(tool_call=call, parse_status=n.ToolCallParseStatus.in_progress),
                    )
                )
                response = await self._execute(call, specs, tools.args)
                tool_step = a.ToolExecutionStep(
                    turn_id=turn.turn_id,
                    step_id=step_id,
                    started_at=started,
                    completed_at=_now(),
                    tool_calls=[call],
                    tool_responses=[response],
                )
                turn.steps.append(tool_step)
                record.messages.append(
                    n.ToolResponseMessage(call_id=response.call_id, content=response.content)
                )
                yield _chunk(
                    a.StepCompletePayload(
                        step_type=a.StepType.tool_execution, step_id=step_id, step_details=tool_step
                    )
                )
                await self.store.put_turn(record)
            pending = [c for c in message.tool_calls if c.tool_name in tools.client]
            if pending:
                record.awaiting = [c.call_id for c in pending]
                # The client is shown only the calls it has to answer.
                turn.output_message = message.model_copy(
                    update={"tool_calls": pending, "stop_reason": n.StopReason.end_of_message}
                )
                await self.store.put_turn(record)
                yield _chunk(a.TurnAwaitingInputPayload(turn=turn))
                return

    async def _history_before(self, session: SessionRecord, turn_id: str) -> list[n.Message]:
        messages: list[n.Message] = []
        for record in await self.store.session_turns(session):
            if record.turn.turn_id == turn_id:
                break
            messages += record.messages
        return messages

    async def _execute(
        self, call: n.ToolCall, specs: dict[str, ToolSpec], tool_args: dict[str, dict]
    ) -> a.ToolResponse:
        """Runs one server-side tool; anything that goes wrong becomes its answer, for the model to see."""
        arguments = dict(call.arguments) if isinstance(call.arguments, dict) else {}
        if isinstance(call.arguments, str):
            try:
                arguments = json.loads(call.arguments)
            except json.JSONDecodeError:
                return a.ToolResponse(
                    call_id=call.call_id,
                    tool_name=call.tool_name,
                    content="error: arguments are not valid JSON",
                )
        if not isinstance(arguments, dict):
            return a.ToolResponse(
                call_id=call.call_id,
                tool_name=call.tool_name,
                content="error: arguments must be a JSON object",
            )
        spec = specs.get(call.tool_name)
        if spec is None:
            return a.ToolResponse(
                call_id=call.call_id,
                tool_name=call.tool_name,
                content=f"error: unknown tool '{call.tool_name}'",
            )
        problem = _check_arguments(spec, arguments)
        if problem:
            return a.ToolResponse(
                call_id=call.call_id,
                tool_name=call.tool_name,
                content=f"error: invalid arguments: {problem}",
                metadata={"error": problem},
            )
        for name in _AGENT_ONLY_ARGS.get(call.tool_name, ()):
            arguments.pop(name, None)
        try:
            # The agent's args for the tool's group win over what the model wrote.
            result = await self.tool_runtime.invoke_tool(
                call.tool_name, {**arguments, **tool_args.get(call.tool_name, {})}
            )
        except StackError as exc:
            return a.ToolResponse(
                call_id=call.call_id,
                tool_name=call.tool_name,
                content=f"error: {exc.detail}",
                metadata={"error": exc.detail},
            )
        content = result.content if result.content is not None else ""
        if result.error_message:
            content = f"{content_to_text(content)}\nerror: {result.error_message}".strip()
        return a.ToolResponse(
            call_id=call.call_id, tool_name=call.tool_name, content=content, metadata=result.metadata
        )

    async def _finish(
        self, record: TurnRecord, content: Any, stop_reason: n.StopReason, *, keep: bool = False
    ) -> AsyncIterator[a.AgentTurnResponseStreamChunk]:
        turn = record.turn
        if not keep:
            turn.output_message = n.CompletionMessage(content=content, stop_reason=stop_reason)
            record.messages.append(turn.output_message)
        else:
            turn.output_message = turn.output_message.model_copy(update={"stop_reason": stop_reason})
        turn.completed_at = _now()
        attachments = []
        for step in turn.steps:
            if isinstance(step, a.ToolExecutionStep):
                for response in step.tool_responses:
                    for item in (response.metadata or {}).get("attachments", []) or []:
                        attachments.append(
                            a.Attachment(
                                content=TextContentItem(text=item.get("filename", "")),
                                mime_type=item.get("mime_type", "application/octet-stream"),
                            )
                        )
        turn.output_attachments = attachments or None
        await self.store.put_turn(record)
        yield _chunk(a.TurnCompletePayload(turn=turn))
