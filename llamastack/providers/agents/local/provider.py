"""The Agents API over a kv store: agents, sessions and turns (see store.py), and the checks and
preparation a turn needs before it runs (turn.py runs it).

RAG works as a tool: ``builtin::rag`` (or ``builtin::rag/knowledge_search``) offers the model
``knowledge_search`` over the vector dbs in the group's args, and over the session's own vector db
where documents attached to turns go. With ``rag_mode: memory_retrieval`` the agent instead
retrieves before the turn's first inference and adds the context to the user message."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from llamastack.stack.apis import agents as a
from llamastack.stack.apis.common import content_to_text
from llamastack.stack.apis.inference import native as n
from llamastack.stack.apis.inference.core import ToolSpec
from llamastack.stack.apis.models import ModelType
from llamastack.stack.apis.tools import RAGToolRuntime
from llamastack.stack.apis.vector_io import RAGDocument, RegisterVectorDbRequest
from llamastack.stack.datatypes import Api, ProviderDeps, required
from llamastack.stack.errors import BadRequestError, NotFoundError, StackError
from llamastack.stack.library_imports import libraries_imported
from llamastack.stack.pagination import paginate
from llamastack.stack.storage.kvstore import SqliteKVStore
from llamastack.stack.storage.legacy import import_sqlite_file

from .config import LocalAgentsConfig
from .store import AgentStore, SessionRecord, TurnRecord
from .toolgroups import KNOWLEDGE_SEARCH, RAG_GROUP, ToolResolver, TurnTools
from .turn import StepEvents, TurnRunner, new_id, no_shields_error, now

# Which vector dbs knowledge_search searches is the agent's configuration, never the model's choice
# (a document's text could otherwise steer the search elsewhere).
_AGENT_ONLY_ARGS = {KNOWLEDGE_SEARCH: ("vector_db_ids", "query_config")}


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
        # The stack hands every provider its namespace of the stack's database; built on its own
        # (no stack), the provider keeps a sqlite file at db_path.
        self._own_kv = deps.store is None
        self.store = AgentStore(deps.store or SqliteKVStore(config.db_path), deps.replicas)
        self.tools = ToolResolver(self.tool_groups)

    def rag(self) -> RAGToolRuntime:
        if self.rag_tool is None:
            raise BadRequestError(
                "No RAG tool provider is configured (add inline::rag-runtime to tool_runtime)."
            )
        return self.rag_tool

    async def initialize(self) -> None:
        if not self._own_kv and "db_path" in self.config.model_fields_set:
            # An older version kept agents in this file: bring them into the stack's database once.
            await import_sqlite_file(Path(self.config.db_path), self.store.kv)
        # On a database that other replicas share, a turn still running may be one of theirs.
        await self.store.recover()

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def shutdown(self) -> None:
        if self._own_kv:
            await self.store.kv.close()

    # --- agents --------------------------------------------------------------------------------

    async def create_agent(self, config: a.AgentConfig) -> a.AgentCreateResponse:
        await self.models.get_model(config.model)  # 404 for an unknown model
        for shield_id in [*(config.input_shields or []), *(config.output_shields or [])]:
            if self.shields is None:
                raise no_shields_error()
            await self.shields.get_shield(shield_id)
        await self.tools.check(config.toolgroups or [])
        agent = a.Agent(agent_id=new_id(), agent_config=config, created_at=now())
        await self.store.create_agent(agent)
        return a.AgentCreateResponse(agent_id=agent.agent_id)

    async def list_agents(self, start_index: int | None, limit: int | None) -> a.PaginatedResponse:
        agents = sorted(await self.store.list_agents(), key=lambda x: x.created_at)
        page = paginate(agents, start_index=start_index, limit=limit, id_of=lambda x: x.agent_id)
        return a.PaginatedResponse(
            data=[x.model_dump(mode="json") for x in page.data], has_more=page.has_more
        )

    async def get_agent(self, agent_id: str) -> a.Agent:
        return await self.store.get_agent(agent_id)

    async def delete_agent(self, agent_id: str) -> None:
        await self.store.delete_agent(agent_id)

    # --- sessions ------------------------------------------------------------------------------

    async def create_session(self, agent_id: str, session_name: str) -> a.AgentSessionCreateResponse:
        await self.store.get_agent(agent_id)
        record = SessionRecord(
            session_id=new_id(), session_name=session_name, agent_id=agent_id, started_at=now().isoformat()
        )
        await self.store.put_session(record)
        return a.AgentSessionCreateResponse(session_id=record.session_id)

    async def list_sessions(
        self, agent_id: str, start_index: int | None, limit: int | None
    ) -> a.PaginatedResponse:
        await self.store.get_agent(agent_id)
        sessions = sorted(await self.store.list_sessions(agent_id), key=lambda s: s.started_at)
        page = paginate(sessions, start_index=start_index, limit=limit, id_of=lambda s: s.session_id)
        views = [(await self.store.session_view(s)).model_dump(mode="json") for s in page.data]
        return a.PaginatedResponse(data=views, has_more=page.has_more)

    async def get_session(self, agent_id: str, session_id: str, turn_ids: list[str] | None) -> a.Session:
        return await self.store.session_view(await self.store.get_session(agent_id, session_id), turn_ids)

    async def delete_session(self, agent_id: str, session_id: str) -> None:
        await self.store.delete_session(agent_id, session_id)

    # --- turns and steps -----------------------------------------------------------------------

    async def get_turn(self, agent_id: str, session_id: str, turn_id: str) -> a.Turn:
        await self.store.get_session(agent_id, session_id)
        return (await self.store.get_turn(session_id, turn_id)).turn

    async def get_step(
        self, agent_id: str, session_id: str, turn_id: str, step_id: str
    ) -> a.AgentStepResponse:
        turn = await self.get_turn(agent_id, session_id, turn_id)
        for step in turn.steps:
            if step.step_id == step_id:
                return a.AgentStepResponse(step=step)
        raise NotFoundError(f"Step '{step_id}' not found in turn '{turn_id}'.")

    async def create_turn(
        self, agent_id: str, session_id: str, request: a.CreateAgentTurnRequest
    ) -> AsyncIterator[a.AgentTurnResponseStreamChunk]:
        agent = await self.store.get_agent(agent_id)
        session = await self.store.get_session(agent_id, session_id)
        self._check_shields_served(agent)
        await self.tools.check(request.toolgroups or [])
        turn = a.Turn(
            turn_id=new_id(),
            session_id=session_id,
            input_messages=request.messages,
            steps=[],
            output_message=n.CompletionMessage(content="", stop_reason=n.StopReason.end_of_turn),
            started_at=now(),
        )
        record = TurnRecord(
            turn=turn,
            messages=list(request.messages),
            toolgroups=[g if isinstance(g, str) else g.model_dump() for g in request.toolgroups or []],
            replica_id=self.store.replicas.replica_id,
        )
        tools = await self._turn_tools(agent, session, record)
        if request.documents:
            tool_mode = self.config.rag_mode == "tool"
            if tool_mode:
                await self._check_documents_searchable(tools)
            await self._index_documents(session, request.documents)
            if tool_mode and session.vector_db_id:
                await self.tools.add_knowledge_search(tools, session.vector_db_id)
        await self.store.put_turn(record)  # before the session names it; recover() removes strays

        vector_db_id = session.vector_db_id  # set by _index_documents for the session's first documents

        def add_turn(stored: SessionRecord) -> None:
            stored.turn_ids.append(turn.turn_id)
            stored.vector_db_id = vector_db_id or stored.vector_db_id

        session = await self.store.update_session(agent_id, session_id, add_turn)
        events = TurnRunner(self, agent, session, record, tools, request.tool_config, first=True).run()
        return self._withdrawn_if_refused(agent_id, record, events)

    async def _withdrawn_if_refused(
        self, agent_id: str, record: TurnRecord, events: AsyncIterator[a.AgentTurnResponseStreamChunk]
    ) -> AsyncIterator[a.AgentTurnResponseStreamChunk]:
        """A turn the engine refused (busy: 429/503) before the model said anything is taken back, so a
        client retrying after Retry-After finds no stray turn in the session's history."""
        try:
            async for event in events:
                yield event
        except StackError as exc:
            answered = any(step.step_type == a.StepType.inference for step in record.turn.steps)
            if exc.status_code in (429, 503) and not answered:
                await self.store.withdraw_turn(agent_id, record.turn.session_id, record.turn.turn_id)
            raise

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
        self._check_shields_served(agent)
        resumed = StepEvents(record.turn, a.StepType.tool_execution).complete(
            tool_calls=[c for c in record.turn.output_message.tool_calls or [] if c.call_id in answered],
            tool_responses=request.tool_responses,
        )
        record.messages += [
            n.ToolResponseMessage(call_id=r.call_id, content=r.content) for r in request.tool_responses
        ]
        record.awaiting = []
        record.replica_id = self.store.replicas.replica_id  # this replica runs it from here on
        tools = await self._turn_tools(agent, session, record)
        await self.store.turn_resumed(agent_id, record)
        return TurnRunner(self, agent, session, record, tools, None, first=False, resumed=resumed).run()

    # --- what a turn needs ---------------------------------------------------------------------

    def _check_shields_served(self, agent: a.Agent) -> None:
        """An agent stored with shields on a server since started without a safety provider."""
        config = agent.agent_config
        if (config.input_shields or config.output_shields) and self.safety is None:
            raise no_shields_error()

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

    async def _index_documents(self, session: SessionRecord, documents: list[a.Document]) -> None:
        if self.vector_dbs is None:
            raise BadRequestError("This server has no vector_io provider, so documents cannot be attached.")
        if session.vector_db_id is None:
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
        rag = self.rag()
        docs = [
            RAGDocument(document_id=f"doc-{new_id()}", content=d.content, mime_type=d.mime_type, metadata={})
            for d in documents
        ]
        await rag.insert(docs, session.vector_db_id, 256)

    def turn_entries(self, record: TurnRecord) -> list[a.AgentTool]:
        """The toolgroups the turn's request named (they replace the agent's for that turn)."""
        return [
            g if isinstance(g, str) else a.AgentToolGroupWithArgs.model_validate(g) for g in record.toolgroups
        ]

    async def _turn_tools(self, agent: a.Agent, session: SessionRecord, record: TurnRecord) -> TurnTools:
        """The tools this turn offers; in tool mode knowledge_search also searches the session's db."""
        memory_mode = self.config.rag_mode == "memory_retrieval"
        tools = await self.tools.resolve(
            agent.agent_config.toolgroups or [],
            self.turn_entries(record),
            agent.agent_config.client_tools or [],
            skip_groups=frozenset({RAG_GROUP}) if memory_mode else frozenset(),
        )
        if session.vector_db_id and not memory_mode:
            await self.tools.add_knowledge_search(tools, session.vector_db_id)
        return tools

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
        with contextlib.suppress(ImportError):  # without jsonschema only required names are checked
            await libraries_imported("jsonschema")  # its first import, off the loop
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
