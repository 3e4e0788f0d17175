"""What a client can make the real server connect to: documents by URL, agent turn documents and MCP
endpoints reach public addresses only, plus the test fixtures' ports, which the `server` fixture
allows one by one (LLAMA_STACK_OUTBOUND_ALLOW); the server's own port is not among them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import CHAT_MODEL, EMBEDDING_MODEL, LoopbackWeb, free_port

pytestmark = pytest.mark.integration

INSERT = "/v1/tool-runtime/rag-tool/insert"


@pytest.fixture()
def db(http: httpx.Client) -> Iterator[str]:
    body = {"vector_db_id": "outbound-docs", "embedding_model": EMBEDDING_MODEL}
    r = http.post("/v1/vector-dbs", json=body)
    assert r.status_code == 200, r.text
    yield "outbound-docs"
    http.delete("/v1/vector-dbs/outbound-docs")


def _insert(http: httpx.Client, db: str, url: str) -> httpx.Response:
    document = {"document_id": "doc", "content": {"uri": url}, "metadata": {}}
    return http.post(INSERT, json={"vector_db_id": db, "chunk_size_in_tokens": 64, "documents": [document]})


def _indexed(http: httpx.Client, db: str) -> list[dict]:
    r = http.post(
        "/v1/vector-io/query",
        json={"vector_db_id": db, "query": "providers", "params": {"max_chunks": 10, "score_threshold": -1}},
    )
    assert r.status_code == 200, r.text
    return r.json()["chunks"]


def _refused(r: httpx.Response, host: str, port: int) -> str:
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert f"Refused to connect to {host} port {port}" in detail
    assert "server.outbound.allow_hosts" in detail and "LLAMA_STACK_OUTBOUND_ALLOW" in detail
    return detail


def test_the_server_does_not_fetch_itself_as_a_document(http: httpx.Client, base_url: str, db: str) -> None:
    port = urlsplit(base_url).port
    assert port is not None
    r = _insert(http, db, f"http://127.0.0.1:{port}/v1/providers")
    _refused(r, "127.0.0.1", port)
    assert _indexed(http, db) == []  # nothing of the server's own answers was stored


def test_open_and_closed_ports_answer_alike(http: httpx.Client, base_url: str, db: str) -> None:
    open_port = urlsplit(base_url).port
    closed_port = free_port()
    details = []
    for port in (open_port, closed_port):
        detail = _refused(_insert(http, db, f"http://127.0.0.1:{port}/v1/providers"), "127.0.0.1", port)
        details.append(detail.replace(str(port), "PORT"))
    assert details[0] == details[1]


@pytest.mark.parametrize(
    ("template", "host"),
    [
        ("http://localhost:{port}/v1/providers", "localhost"),
        ("http://2130706433:{port}/v1/providers", "2130706433"),
        ("http://[::ffff:127.0.0.1]:{port}/v1/providers", "::ffff:127.0.0.1"),
        ("http://169.254.169.254:{port}/latest/meta-data/", "169.254.169.254"),
        ("http://10.0.0.1:{port}/", "10.0.0.1"),
    ],
)
def test_other_spellings_and_private_addresses_are_refused(
    http: httpx.Client, base_url: str, db: str, template: str, host: str
) -> None:
    port = urlsplit(base_url).port
    _refused(_insert(http, db, template.format(port=port)), host, port)


def test_an_allowed_host_is_fetched(http: httpx.Client, docs_server: LoopbackWeb, db: str) -> None:
    docs_server.routes["/providers-note.txt"] = (
        200,
        {"Content-Type": "text/plain"},
        b"Inference providers serve models; vector providers store chunks.",
    )
    r = _insert(http, db, f"{docs_server.url}/providers-note.txt")
    assert r.status_code == 200, r.text
    assert [c["metadata"]["document_id"] for c in _indexed(http, db)] == ["doc"]


def test_a_redirect_from_an_allowed_host_to_a_refused_one_is_refused(
    http: httpx.Client, docs_server: LoopbackWeb, base_url: str, db: str
) -> None:
    port = urlsplit(base_url).port
    docs_server.routes["/to-the-server"] = (302, {"Location": f"http://127.0.0.1:{port}/v1/providers"}, b"")
    r = _insert(http, db, f"{docs_server.url}/to-the-server")
    detail = _refused(r, "127.0.0.1", port)
    assert detail.startswith("Document 'doc': ")
    assert "/to-the-server" in docs_server.hits  # the first hop was fetched, the second refused
    assert _indexed(http, db) == []


def test_agent_turn_documents_are_checked_too(http: httpx.Client, base_url: str) -> None:
    port = urlsplit(base_url).port
    agent = http.post("/v1/agents", json={"agent_config": {"model": CHAT_MODEL, "instructions": "x"}})
    assert agent.status_code == 200, agent.text
    agent_id = agent.json()["agent_id"]
    try:
        session = http.post(f"/v1/agents/{agent_id}/session", json={"session_name": "s"})
        session_id = session.json()["session_id"]
        r = http.post(
            f"/v1/agents/{agent_id}/session/{session_id}/turn",
            json={
                "messages": [{"role": "user", "content": "What does the document say?"}],
                "documents": [
                    {"content": {"uri": f"http://127.0.0.1:{port}/v1/providers"}, "mime_type": "text/plain"}
                ],
                "stream": False,
            },
        )
        _refused(r, "127.0.0.1", port)
    finally:
        http.delete(f"/v1/agents/{agent_id}")


def test_mcp_endpoints_are_checked_when_registered(http: httpx.Client, base_url: str) -> None:
    with socket.socket() as listening:  # an open port that no allowlist names
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        listening.setblocking(False)
        port = listening.getsockname()[1]
        r = http.post(
            "/v1/toolgroups",
            json={
                "toolgroup_id": "mcp::internal",
                "provider_id": "model-context-protocol",
                "mcp_endpoint": {"uri": f"http://127.0.0.1:{port}/mcp"},
            },
        )
        _refused(r, "127.0.0.1", port)
        with pytest.raises(BlockingIOError):
            listening.accept()  # no connection was attempted
    assert http.get("/v1/toolgroups/mcp::internal").status_code == 404


def test_an_allowed_mcp_endpoint_works(http: httpx.Client, mcp_url: str) -> None:
    group = {"toolgroup_id": "mcp::allowed", "provider_id": "model-context-protocol"}
    r = http.post("/v1/toolgroups", json={**group, "mcp_endpoint": {"uri": mcp_url}})
    assert r.status_code == 200, r.text
    try:
        tools = http.get("/v1/tools", params={"toolgroup_id": "mcp::allowed"}).json()["data"]
        assert "add" in {t["identifier"] for t in tools}
    finally:
        http.delete("/v1/toolgroups/mcp::allowed")
