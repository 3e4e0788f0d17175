"""No permanent corruption: nothing invalid is written, and a stored record that no longer validates
is set aside at start-up (logged once, left out of lists, 404 on get, deletable), never fatal."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import CHAT_MODEL, start_server

pytestmark = pytest.mark.integration

NOTES = b"The meeting room is on the fourth floor, next to the kitchen."


def _kv_set(where: Path | tuple[Path, str], key: str, value: str) -> None:
    db, key = (where, key) if isinstance(where, Path) else (where[0], where[1] + key)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO kvstore (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _kv_get(where: Path | tuple[Path, str], key: str) -> str:
    db, key = (where, key) if isinstance(where, Path) else (where[0], where[1] + key)
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT value FROM kvstore WHERE key = ?", (key,)).fetchone()[0]


def test_update_with_null_metadata_corrupts_nothing(tmp_path: Path) -> None:
    """The exact request that used to store `metadata: null` and break the store for good."""
    state = tmp_path / "state"
    server = start_server(state)
    try:
        api = f"{server.base_url}/v1/openai/v1/vector_stores"
        vs = httpx.post(api, json={"name": "kept", "metadata": {"team": "hr"}}, timeout=60).json()
        r = httpx.post(f"{api}/{vs['id']}", json={"metadata": None})
        assert r.status_code == 200, r.text
        assert r.json()["metadata"] == {"team": "hr"}  # null leaves the field as it was
        r = httpx.post(f"{api}/{vs['id']}", json={"name": None, "expires_after": None})
        assert r.status_code == 200 and r.json()["name"] == "kept"
        r = httpx.post(f"{api}/{vs['id']}", json={"metadata": "not a map"})
        assert r.status_code == 400 and "metadata" in r.json()["detail"]
        assert httpx.get(f"{api}/{vs['id']}").status_code == 200
        assert vs["id"] in {v["id"] for v in httpx.get(api).json()["data"]}
    finally:
        server.stop()

    server = start_server(state)
    try:
        api = f"{server.base_url}/v1/openai/v1/vector_stores"
        assert httpx.get(f"{api}/{vs['id']}").json()["metadata"] == {"team": "hr"}
        assert httpx.get(api).status_code == 200
        assert httpx.delete(f"{api}/{vs['id']}").status_code == 200
        assert httpx.get(f"{api}/{vs['id']}").status_code == 404
    finally:
        server.stop()


def test_corrupt_records_are_set_aside_and_deletable(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    try:
        base = server.base_url
        api = f"{base}/v1/openai/v1"
        file_id = httpx.post(
            f"{api}/files", files={"file": ("notes.txt", NOTES, "text/plain")}, data={"purpose": "assistants"}
        ).json()["id"]
        kept = httpx.post(
            f"{api}/vector_stores", json={"name": "kept", "file_ids": [file_id]}, timeout=60
        ).json()
        broken = httpx.post(f"{api}/vector_stores", json={"name": "broken"}, timeout=60).json()
        agent_id = httpx.post(
            f"{base}/v1/agents", json={"agent_config": {"model": CHAT_MODEL, "instructions": "Be brief."}}
        ).json()["agent_id"]
        session_id = httpx.post(f"{base}/v1/agents/{agent_id}/session", json={"session_name": "s"}).json()[
            "session_id"
        ]
    finally:
        server.stop()

    # Damage records behind the server's back, in each of its stores.
    # One database; the files and agents providers' records live under their namespaces in it.
    registry = state / "registry.db"
    files_db, agents_db = (registry, "files/localfs:"), (registry, "agents/agents:")
    stored = json.loads(_kv_get(registry, f"vector_store:{broken['id']}"))
    _kv_set(registry, f"vector_store:{broken['id']}", json.dumps({**stored, "metadata": None}))  # the old bug
    _kv_set(registry, "vector_store:vs_junk", "{not json")
    _kv_set(registry, f"vector_store_file:{kept['id']}:file-broken", '{"file": {"id": "file-broken"}}')
    _kv_set(registry, "vector_db:broken-db", '{"identifier": "broken-db"}')
    _kv_set(registry, "model:broken-model", '{"identifier": 5, "provider_id": "llama-cpp"}')
    bad_file = f"file-{uuid.uuid4().hex}"
    _kv_set(files_db, f"file:{bad_file}", json.dumps({"id": bad_file, "bytes": "many"}))
    (state / "files" / bad_file).write_bytes(b"content of a file whose record is damaged")
    _kv_set(agents_db, "agent:broken-agent", '{"agent_id": "broken-agent"}')
    _kv_set(agents_db, f"session:{agent_id}:broken-session", "[]")
    session = json.loads(_kv_get(agents_db, f"session:{agent_id}:{session_id}"))
    _kv_set(
        agents_db, f"session:{agent_id}:{session_id}", json.dumps({**session, "turn_ids": ["broken-turn"]})
    )
    _kv_set(agents_db, f"turn:{session_id}:broken-turn", '{"turn": null}')
    damaged = [
        broken["id"],
        "vs_junk",
        f"{kept['id']}:file-broken",
        "broken-db",
        "broken-model",
        bad_file,
        "broken-agent",
        f"{agent_id}:broken-session",
        f"{session_id}:broken-turn",
    ]

    server = start_server(state)  # raises if the server does not come up
    try:
        base = server.base_url
        api = f"{base}/v1/openai/v1"
        with httpx.Client(base_url=base, timeout=60) as http:
            for _ in range(2):  # lists keep working, and leave the damaged records out
                assert {v["id"] for v in http.get(f"{api}/vector_stores").json()["data"]} == {kept["id"]}
                listed = http.get(f"{api}/vector_stores/{kept['id']}/files").json()["data"]
                assert [f["id"] for f in listed] == [file_id]
                assert "broken-db" not in {d["identifier"] for d in http.get("/v1/vector-dbs").json()["data"]}
                assert "broken-model" not in {m["identifier"] for m in http.get("/v1/models").json()["data"]}
                assert [f["id"] for f in http.get(f"{api}/files").json()["data"]] == [file_id]
                assert [a["agent_id"] for a in http.get("/v1/agents").json()["data"]] == [agent_id]
                sessions = http.get(f"/v1/agents/{agent_id}/sessions").json()["data"]
                assert [s["session_id"] for s in sessions] == [session_id]
                view = http.get(f"/v1/agents/{agent_id}/session/{session_id}")
                assert view.status_code == 200 and view.json()["turns"] == []

            # The healthy records are served as before.
            assert http.get(f"{api}/vector_stores/{kept['id']}").json()["file_counts"]["completed"] == 1
            found = http.post(
                f"{api}/vector_stores/{kept['id']}/search", json={"query": "meeting room"}
            ).json()
            assert found["data"][0]["file_id"] == file_id

            # A damaged record answers a 404 that says so, never a 500.
            for path in (
                f"{api}/vector_stores/{broken['id']}",
                f"{api}/vector_stores/vs_junk",
                f"{api}/vector_stores/{kept['id']}/files/file-broken",
                f"{api}/files/{bad_file}",
                "/v1/agents/broken-agent",
                f"/v1/agents/{agent_id}/session/broken-session",
                f"/v1/agents/{agent_id}/session/{session_id}/turn/broken-turn",
            ):
                r = http.get(path)
                assert r.status_code == 404 and "cannot be read" in r.json()["detail"], (path, r.text)
            for path in ("/v1/vector-dbs/broken-db", "/v1/models/broken-model"):
                assert http.get(path).status_code == 404, path
            assert http.post(f"{api}/vector_stores/{broken['id']}", json={"name": "x"}).status_code == 404

            log = server.log()
            for key in damaged:  # logged once each, with what is wrong
                lines = [line for line in log.splitlines() if "set aside" in line and f"'{key}'" in line]
                assert len(lines) == 1, (key, lines)
            assert "metadata" in next(line for line in log.splitlines() if f"'{broken['id']}'" in line)

            # And every damaged record can be deleted.
            for path in (
                f"{api}/vector_stores/{broken['id']}",
                f"{api}/vector_stores/vs_junk",
                f"{api}/vector_stores/{kept['id']}/files/file-broken",
                f"{api}/files/{bad_file}",
                "/v1/vector-dbs/broken-db",
                "/v1/models/broken-model",
                "/v1/agents/broken-agent",
                f"/v1/agents/{agent_id}/session/broken-session",
            ):
                r = http.delete(path)
                assert r.status_code == 200, (path, r.text)
                assert http.get(path).status_code == 404
                assert http.delete(path).status_code == 404, path
            # A damaged turn goes with its session (the API has no turn delete).
            assert http.delete(f"/v1/agents/{agent_id}/session/{session_id}").status_code == 200
            assert not (state / "files" / bad_file).exists()
            assert broken["id"] not in {d["identifier"] for d in http.get("/v1/vector-dbs").json()["data"]}
    finally:
        server.stop()

    server = start_server(state)
    try:
        assert "set aside" not in server.log()
        assert httpx.get(f"{server.base_url}/v1/openai/v1/vector_stores/{kept['id']}").status_code == 200
    finally:
        server.stop()
