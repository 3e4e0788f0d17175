"""Agents, sessions and turns in a kv store, plus the conversation each turn added.

With API keys, an agent belongs to the key that created it; its sessions, turns and steps are
reached only through it, so to any other (non-admin) key all of them are 404.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from llamastack.stack.access import OwnerIndex
from llamastack.stack.apis.agents import Agent, Session, Turn
from llamastack.stack.apis.inference.native import Message
from llamastack.stack.errors import NotFoundError
from llamastack.stack.storage.kvstore import KVStore


class TurnRecord(BaseModel):
    """A turn as the API shows it, plus what the next inference needs to continue after it."""

    turn: Turn
    messages: list[Message] = Field(default_factory=list)  # everything this turn added to the conversation
    awaiting: list[str] = Field(default_factory=list)  # call ids of client tools still to answer
    iterations: int = 0
    toolgroups: list = Field(default_factory=list)


class SessionRecord(BaseModel):
    session_id: str
    session_name: str
    agent_id: str
    started_at: str
    turn_ids: list[str] = Field(default_factory=list)
    vector_db_id: str | None = None  # where documents attached to its turns are indexed


def _agent_not_found(agent_id: str) -> NotFoundError:
    return NotFoundError(f"Agent '{agent_id}' not found. Use client.agents.list() to list agents.")


class AgentStore:
    def __init__(self, kv: KVStore) -> None:
        self.kv = kv
        self.owners = OwnerIndex(kv, "agent")

    async def create_agent(self, agent: Agent) -> None:
        await self.owners.claim(agent.agent_id)
        await self.put_agent(agent)

    async def put_agent(self, agent: Agent) -> None:
        await self.kv.set(f"agent:{agent.agent_id}", agent.model_dump_json())

    async def get_agent(self, agent_id: str) -> Agent:
        await self.owners.check(agent_id, lambda: _agent_not_found(agent_id))
        raw = await self.kv.get(f"agent:{agent_id}")
        if raw is None:
            raise _agent_not_found(agent_id)
        return Agent.model_validate_json(raw)

    async def list_agents(self) -> list[Agent]:
        agents = [Agent.model_validate_json(r) for r in await self.kv.values_with_prefix("agent:")]
        return await self.owners.visible(agents, key=lambda a: a.agent_id)

    async def delete_agent(self, agent_id: str) -> None:
        await self.get_agent(agent_id)
        for session in await self.list_sessions(agent_id):
            await self.delete_session(agent_id, session.session_id)
        await self.kv.delete(f"agent:{agent_id}")
        await self.owners.release(agent_id)

    async def put_session(self, record: SessionRecord) -> None:
        await self.kv.set(f"session:{record.agent_id}:{record.session_id}", record.model_dump_json())

    async def get_session(self, agent_id: str, session_id: str) -> SessionRecord:
        await self.get_agent(agent_id)
        raw = await self.kv.get(f"session:{agent_id}:{session_id}")
        if raw is None:
            raise NotFoundError(f"Session '{session_id}' not found for agent '{agent_id}'.")
        return SessionRecord.model_validate_json(raw)

    async def list_sessions(self, agent_id: str) -> list[SessionRecord]:
        raw = await self.kv.values_with_prefix(f"session:{agent_id}:")
        return [SessionRecord.model_validate_json(r) for r in raw]

    async def delete_session(self, agent_id: str, session_id: str) -> None:
        record = await self.get_session(agent_id, session_id)
        for turn_id in record.turn_ids:
            await self.kv.delete(f"turn:{session_id}:{turn_id}")
        await self.kv.delete(f"session:{agent_id}:{session_id}")

    async def put_turn(self, record: TurnRecord) -> None:
        await self.kv.set(f"turn:{record.turn.session_id}:{record.turn.turn_id}", record.model_dump_json())

    async def get_turn(self, session_id: str, turn_id: str) -> TurnRecord:
        raw = await self.kv.get(f"turn:{session_id}:{turn_id}")
        if raw is None:
            raise NotFoundError(f"Turn '{turn_id}' not found in session '{session_id}'.")
        return TurnRecord.model_validate_json(raw)

    async def session_view(self, record: SessionRecord, turn_ids: list[str] | None = None) -> Session:
        turns = []
        for turn_id in record.turn_ids:
            if turn_ids and turn_id not in turn_ids:
                continue
            turns.append((await self.get_turn(record.session_id, turn_id)).turn)
        return Session(
            session_id=record.session_id,
            session_name=record.session_name,
            turns=turns,
            started_at=record.started_at,
        )
