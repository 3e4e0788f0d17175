"""Agents, sessions and turns in a kv store, plus the conversation each turn added.

With API keys, an agent belongs to the key that created it; its sessions, turns and steps are
reached only through it, so to any other (non-admin) key all of them are 404.

Every record is validated before it is written, and one that no longer reads is set aside (left
out of lists and sessions, still deletable); see stack/storage/records.py. A turn is written when
it starts and again after each step, with the id of the replica running it. A turn that is
neither completed nor waiting for client tool answers, and whose replica is gone (a crash; with
replicas, one whose lease lapsed: stack/storage/replicas.py), was interrupted: it is removed from its
session, so the session reads and continues as if that request had failed before it began. That
happens at start-up (`recover()`), and whenever the session is read (`settle()`), so a session whose
replica died is usable again on the others once that replica's lease has expired.

The conversation so far is kept on the session record, as the messages of each turn at rest
(completed, or waiting for client tool answers), so a new turn reads it with the session instead of
re-reading every earlier turn. A turn's part is written after the turn record that it copies, and
dropped before a resumed turn changes again; a turn without one (still running, or stored before
the history was kept) is read from its own record, as before. Session writes are read-modify-write
in one transaction, so concurrent turns of a session (on any replica) do not undo each other's changes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable

from pydantic import BaseModel, Field

from llamastack.stack.access import OwnerIndex
from llamastack.stack.apis.agents import Agent, Session, Turn
from llamastack.stack.apis.inference.native import Message
from llamastack.stack.errors import NotFoundError
from llamastack.stack.storage.kvstore import KVStore
from llamastack.stack.storage.records import RecordStore
from llamastack.stack.storage.replicas import Judge, ReplicaLeases

log = logging.getLogger(__name__)


class TurnRecord(BaseModel):
    """A turn as the API shows it, plus what the next inference needs to continue after it."""

    turn: Turn
    messages: list[Message] = Field(default_factory=list)  # everything this turn added to the conversation
    awaiting: list[str] = Field(default_factory=list)  # call ids of client tools still to answer
    iterations: int = 0
    toolgroups: list = Field(default_factory=list)
    replica_id: str | None = None  # the replica running it (or that last ran it)


class SessionRecord(BaseModel):
    session_id: str
    session_name: str
    agent_id: str
    started_at: str
    turn_ids: list[str] = Field(default_factory=list)
    vector_db_id: str | None = None  # where documents attached to its turns are indexed
    # turn id -> the messages that turn added, for the turns at rest (see the module docstring)
    history: dict[str, list[Message]] = Field(default_factory=dict)


def _under_way(record: TurnRecord) -> bool:
    return record.turn.completed_at is None and not record.awaiting


class AgentStore:
    def __init__(self, kv: KVStore, replicas: ReplicaLeases | None = None) -> None:
        self.kv = kv
        # Built on its own (no stack), the store is alone on its database.
        self.replicas = replicas or ReplicaLeases(kv, shared=False)
        self.owners = OwnerIndex(kv, "agent")
        self.agents: RecordStore[Agent] = RecordStore(kv, Agent, kind="agent")
        self.sessions: RecordStore[SessionRecord] = RecordStore(kv, SessionRecord, kind="session")
        self.turns: RecordStore[TurnRecord] = RecordStore(kv, TurnRecord, kind="turn")

    async def create_agent(self, agent: Agent) -> None:
        await self.owners.claim(agent.agent_id)
        await self.put_agent(agent)

    async def put_agent(self, agent: Agent) -> None:
        await self.agents.put(agent.agent_id, agent)

    async def get_agent(self, agent_id: str) -> Agent:
        await self.owners.check(agent_id, lambda: _agent_not_found(agent_id))
        return await self.agents.require(agent_id, lambda: _agent_not_found(agent_id))

    async def list_agents(self) -> list[Agent]:
        return await self.owners.visible(await self.agents.list(), key=lambda a: a.agent_id)

    async def delete_agent(self, agent_id: str) -> None:
        await self.owners.check(agent_id, lambda: _agent_not_found(agent_id))
        if not await self.agents.exists(agent_id):  # an unreadable agent can be deleted, too
            raise _agent_not_found(agent_id)
        for key in await self.sessions.keys(f"{agent_id}:"):
            await self._delete_session(key)
        await self.agents.delete(agent_id)
        await self.owners.release(agent_id)

    async def put_session(self, record: SessionRecord) -> None:
        await self.sessions.put(f"{record.agent_id}:{record.session_id}", record)

    async def get_session(self, agent_id: str, session_id: str) -> SessionRecord:
        await self.get_agent(agent_id)
        record = await self.sessions.require(
            f"{agent_id}:{session_id}", lambda: _session_not_found(agent_id, session_id)
        )
        return await self.settle(record)

    async def settle(self, record: SessionRecord, judge: Judge | None = None) -> SessionRecord:
        """The session without the turns its replica's death interrupted (removed now). Only turns
        not at rest are looked at (normally none, or the one running): one read each. Alone on its
        database there is nothing to do: start-up recovery removed what the last stop cut off."""
        if not self.replicas.shared:
            return record
        gone = []
        for turn_id in record.turn_ids:
            if turn_id in record.history:
                continue
            turn = await self.turns.get(f"{record.session_id}:{turn_id}")
            if turn is None or not _under_way(turn):
                continue
            if judge is not None:
                alive = judge(turn.replica_id, turn.turn.started_at)
            else:
                alive = await self.replicas.alive(turn.replica_id, turn.turn.started_at)
            if not alive:
                gone.append(turn_id)
        if not gone:
            return record
        log.warning(
            "Removed %d turn(s) of session %s: the replica running them stopped.",
            len(gone),
            record.session_id,
        )
        for turn_id in gone:
            await self.withdraw_turn(record.agent_id, record.session_id, turn_id)
        fresh = await self.sessions.get(f"{record.agent_id}:{record.session_id}")
        return fresh if fresh is not None else record

    async def update_session(
        self, agent_id: str, session_id: str, change: Callable[[SessionRecord], object]
    ) -> SessionRecord:
        """Applies `change` to the stored session (read afresh) and writes it back; the result."""
        # One transaction: concurrent turns (in this process or on another replica) apply in turn.
        key = f"{agent_id}:{session_id}"
        return await self.sessions.update(key, change, lambda: _session_not_found(agent_id, session_id))

    async def _update_history(
        self, agent_id: str, session_id: str, change: Callable[[SessionRecord], object]
    ) -> None:
        """Like update_session, for a session that may be gone (deleted while its turn ran): then
        there is no history to keep."""
        with contextlib.suppress(NotFoundError):
            await self.update_session(agent_id, session_id, change)

    async def list_sessions(self, agent_id: str) -> list[SessionRecord]:
        sessions = await self.sessions.list(f"{agent_id}:")
        if not self.replicas.shared or all(t in s.history for s in sessions for t in s.turn_ids):
            return sessions
        judge = await self.replicas.judge()
        return [await self.settle(s, judge) for s in sessions]

    async def delete_session(self, agent_id: str, session_id: str) -> None:
        await self.owners.check(agent_id, lambda: _agent_not_found(agent_id))
        if not await self.agents.exists(agent_id):
            raise _agent_not_found(agent_id)
        key = f"{agent_id}:{session_id}"
        if not await self.sessions.exists(key):
            raise _session_not_found(agent_id, session_id)
        await self._delete_session(key)

    async def _delete_session(self, key: str) -> None:
        """Turns first, then the session: a crash in between leaves a session that still reads."""
        session_id = key.split(":", 1)[1]
        for turn_key in await self.turns.keys(f"{session_id}:"):
            await self.turns.delete(turn_key)
        await self.sessions.delete(key)

    async def put_turn(self, record: TurnRecord) -> None:
        await self.turns.put(f"{record.turn.session_id}:{record.turn.turn_id}", record)

    async def withdraw_turn(self, agent_id: str, session_id: str, turn_id: str) -> None:
        """Takes back a turn that never ran: the session stops naming it, then its record goes (a crash
        in between leaves a stray record, which `recover` removes)."""

        def drop(stored: SessionRecord) -> None:
            stored.turn_ids = [t for t in stored.turn_ids if t != turn_id]
            stored.history.pop(turn_id, None)

        await self._update_history(agent_id, session_id, drop)
        await self.turns.delete(f"{session_id}:{turn_id}")

    async def get_turn(self, session_id: str, turn_id: str) -> TurnRecord:
        return await self.turns.require(
            f"{session_id}:{turn_id}",
            lambda: NotFoundError(f"Turn '{turn_id}' not found in session '{session_id}'."),
        )

    async def session_turns(self, record: SessionRecord) -> list[TurnRecord]:
        """The session's turns in order; a turn that is missing or unreadable is skipped."""
        turns = []
        for turn_id in record.turn_ids:
            found = await self.turns.get(f"{record.session_id}:{turn_id}")
            if found is not None:
                turns.append(found)
        return turns

    async def history_before(self, record: SessionRecord, turn_id: str) -> list[Message]:
        """The conversation of the session's turns before `turn_id`: one store read per earlier turn
        not at rest (normally none); a missing or unreadable one adds nothing."""
        messages: list[Message] = []
        for earlier in record.turn_ids:
            if earlier == turn_id:
                break
            part = record.history.get(earlier)
            if part is None:
                found = await self.turns.get(f"{record.session_id}:{earlier}")
                part = found.messages if found is not None else []
            messages += part
        return messages

    async def turn_at_rest(self, agent_id: str, record: TurnRecord) -> None:
        """Writes a completed turn, or one waiting for client tools, and its part of the history
        (unless the session no longer names it: taken for interrupted meanwhile)."""
        await self.put_turn(record)
        turn_id, messages = record.turn.turn_id, list(record.messages)

        def keep(stored: SessionRecord) -> None:
            if turn_id in stored.turn_ids:
                stored.history[turn_id] = messages

        await self._update_history(agent_id, record.turn.session_id, keep)

    async def turn_resumed(self, agent_id: str, record: TurnRecord) -> None:
        """Writes a turn that goes on again; its history part is dropped first, so until it is at rest
        the next turn reads it from its record (a crash now leaves it to `recover`)."""
        turn_id = record.turn.turn_id
        await self._update_history(agent_id, record.turn.session_id, lambda s: s.history.pop(turn_id, None))
        await self.put_turn(record)

    async def session_view(self, record: SessionRecord, turn_ids: list[str] | None = None) -> Session:
        turns = [
            t.turn for t in await self.session_turns(record) if not turn_ids or t.turn.turn_id in turn_ids
        ]
        return Session.model_validate(  # started_at is stored as ISO text; the model parses it
            {
                "session_id": record.session_id,
                "session_name": record.session_name,
                "turns": turns,
                "started_at": record.started_at,
            }
        )

    async def recover(self, *, others_may_run: bool | None = None) -> int:
        """At start-up: removes turns a crash interrupted, and turn records no session refers to;
        gives every turn at rest its history part (sessions stored before the history was kept).
        Returns how many interrupted turns were removed.

        `others_may_run` (by default: whether the database is shared with other replicas): a turn
        still under way may be another replica's. Then it counts as interrupted only if that
        replica's lease has lapsed, a record no session refers to yet is removed only then, and each
        session is changed in one transaction that keeps what another replica wrote meanwhile.
        Alone on the database, every turn under way was cut off by the last stop."""
        shared = self.replicas.shared if others_may_run is None else others_may_run
        judge = await self.replicas.judge()

        def interrupted(record: TurnRecord) -> bool:
            return _under_way(record) and not (shared and judge(record.replica_id, record.turn.started_at))

        removed = 0
        for key, session in await self.sessions.items():
            kept = []
            history = {}
            for turn_id in session.turn_ids:
                record = await self.turns.get(f"{session.session_id}:{turn_id}")
                if record is not None and interrupted(record):
                    removed += 1
                    continue
                if record is not None or await self.turns.exists(f"{session.session_id}:{turn_id}"):
                    kept.append(turn_id)  # an unreadable turn stays set aside, not lost
                if record is not None and not _under_way(record):
                    history[turn_id] = record.messages
            if shared:
                gone = set(session.turn_ids) - set(kept)

                def change(s: SessionRecord, gone: set[str] = gone, history: dict = history) -> None:
                    s.turn_ids = [t for t in s.turn_ids if t not in gone]
                    s.history = {**history, **s.history}
                    for turn_id in gone:
                        s.history.pop(turn_id, None)

                with contextlib.suppress(NotFoundError):
                    session = await self.sessions.update(key, change, functools.partial(NotFoundError, key))
                for turn_id in gone:
                    await self.turns.delete(f"{session.session_id}:{turn_id}")
                kept = session.turn_ids  # as stored now: another replica may have added one
            elif kept != session.turn_ids or history != session.history:
                await self.sessions.put(
                    key, session.model_copy(update={"turn_ids": kept, "history": history})
                )
            for turn_key in await self.turns.keys(f"{session.session_id}:"):
                if turn_key.split(":", 1)[1] in kept:
                    continue
                if shared:  # a stray: one being created names no session yet, so only a dead one goes
                    stray = await self.turns.get(turn_key)
                    if stray is None or not interrupted(stray):
                        continue
                await self.turns.delete(turn_key)
        if removed:
            log.warning("Removed %d agent turn(s) interrupted by a server stop.", removed)
        return removed


def _agent_not_found(agent_id: str) -> NotFoundError:
    return NotFoundError(f"Agent '{agent_id}' not found. Use client.agents.list() to list agents.")


def _session_not_found(agent_id: str, session_id: str) -> NotFoundError:
    return NotFoundError(f"Session '{session_id}' not found for agent '{agent_id}'.")
