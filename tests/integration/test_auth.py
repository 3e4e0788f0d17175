"""API keys, per-key isolation, exposure and secrets against the real `local` distribution, with the
official clients (llama-stack-client 0.2.12 and openai) sending their api_key."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import llama_stack_client
import openai
import pytest
from llama_stack_client import LlamaStackClient

from conftest import CHAT_MODEL, EMBEDDING_MODEL, RunningServer, start_server

pytestmark = pytest.mark.integration

K1, K2, ADMIN = "ls-key-one-8c1f2a", "ls-key-two-93bd7e", "ls-admin-key-4e0c55"
PROVIDER_KEYS = {
    "BRAVE_SEARCH_API_KEY": "brave-secret-5f1e9d",
    "TAVILY_SEARCH_API_KEY": "tvly-secret-27ac44",
    "WOLFRAM_ALPHA_API_KEY": "wolfram-secret-b81d03",
}
ORIGIN = "http://app.example"
GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 8}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {
        "LLAMA_STACK_API_KEYS": f"{K1},{K2}",
        "LLAMA_STACK_ADMIN_API_KEY": ADMIN,
        "LLAMA_STACK_CORS_ORIGINS": ORIGIN,
        "LLAMA_STACK_HOST": "",  # the distribution's default bind address
        **PROVIDER_KEYS,
    }
    # host=None: the bind address comes from the run config; --access-log logs every request line.
    running = start_server(tmp_path_factory.mktemp("auth"), env=env, host=None, extra_args=("--access-log",))
    yield running
    running.stop()


def _http(server: RunningServer, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=120)


def _stack(server: RunningServer, key: str | None) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.base_url, api_key=key, max_retries=0, timeout=120)


def _openai(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key=key, max_retries=0, timeout=120)


def test_binds_loopback_by_default_and_says_so(secured: RunningServer) -> None:
    log = secured.log()
    assert "Uvicorn running on http://127.0.0.1:" in log
    assert "(loopback only; --host 0.0.0.0 exposes it to other machines)" in log
    assert "API keys required on every route but /v1/health: 2 key(s), 1 admin key(s)" in log


def test_official_clients_authenticate_with_their_api_key(secured: RunningServer) -> None:
    models = [m.identifier for m in _stack(secured, K1).models.list()]
    assert CHAT_MODEL in models and EMBEDDING_MODEL in models
    with pytest.raises(llama_stack_client.AuthenticationError) as err:
        _stack(secured, None).models.list()
    assert err.value.status_code == 401
    with pytest.raises(llama_stack_client.AuthenticationError):
        _stack(secured, "not-a-key").models.list()

    assert CHAT_MODEL in [m.id for m in _openai(secured, K2).models.list()]
    with pytest.raises(openai.AuthenticationError) as oerr:
        _openai(secured, "not-a-key").models.list()
    assert "API key is not valid" in oerr.value.message
    # Streams pass through the key check unbuffered.
    stream = _openai(secured, K1).chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True
    )
    assert len([c for c in stream if c.choices and c.choices[0].delta.content]) >= 1
    assert httpx.get(f"{secured.base_url}/v1/health").status_code == 200  # probes need no key


def test_provider_configs_show_secrets_as_stars(secured: RunningServer) -> None:
    with _http(secured, K1) as http:
        listed = http.get("/v1/providers")
        one = {
            pid: http.get(f"/v1/providers/{pid}")
            for pid in ("brave-search", "tavily-search", "wolfram-alpha")
        }
    assert listed.status_code == 200
    for response in (listed, *one.values()):
        for secret in PROVIDER_KEYS.values():
            assert secret not in response.text
    for response in one.values():
        assert response.json()["config"]["api_key"] == "********"
    # The config's key still works where it is used: the tool reaches for its upstream with it
    # (which is unreachable here, so the answer is a 502 naming the upstream, without the key).
    with _http(secured, K1) as http:
        r = http.post(
            "/v1/tool-runtime/invoke", json={"tool_name": "wolfram_alpha", "kwargs": {"query": "2+2"}}
        )
    assert r.status_code == 502 and "wolfram_alpha could not reach" in r.json()["detail"]
    assert PROVIDER_KEYS["WOLFRAM_ALPHA_API_KEY"] not in r.text


def test_agents_and_sessions_are_private_to_their_key(secured: RunningServer) -> None:
    mine, theirs, admin = _stack(secured, K1), _stack(secured, K2), _stack(secured, ADMIN)
    agent_id = mine.agents.create(
        agent_config={"model": CHAT_MODEL, "instructions": "Be brief.", "sampling_params": GREEDY}
    ).agent_id
    session_id = mine.agents.session.create(agent_id, session_name="s").session_id
    turn = mine.agents.turn.create(
        session_id, agent_id=agent_id, messages=[{"role": "user", "content": "Hi"}], stream=False
    )

    with pytest.raises(llama_stack_client.NotFoundError):
        theirs.agents.session.create(agent_id, session_name="intruder")
    with pytest.raises(llama_stack_client.NotFoundError):
        theirs.agents.session.retrieve(session_id, agent_id=agent_id)
    with pytest.raises(llama_stack_client.NotFoundError):
        theirs.agents.turn.retrieve(turn.turn_id, agent_id=agent_id, session_id=session_id)
    with pytest.raises(llama_stack_client.NotFoundError):
        theirs.agents.turn.create(
            session_id, agent_id=agent_id, messages=[{"role": "user", "content": "Hi"}], stream=False
        )
    with pytest.raises(llama_stack_client.NotFoundError):
        theirs.agents.session.delete(session_id, agent_id=agent_id)
    with pytest.raises(llama_stack_client.NotFoundError):
        theirs.agents.delete(agent_id)
    with _http(secured, K2) as http:
        missing = http.get("/v1/agents/0123456789abcdef0123456789abcdef")
        other = http.get(f"/v1/agents/{agent_id}")
        assert other.status_code == missing.status_code == 404
        assert other.json()["detail"].replace(agent_id, "X") == missing.json()["detail"].replace(
            "0123456789abcdef0123456789abcdef", "X"
        )
        assert http.get(f"/v1/agents/{agent_id}/sessions").status_code == 404
        assert agent_id not in http.get("/v1/agents").text
    with _http(secured, ADMIN) as http:
        assert agent_id in http.get("/v1/agents").text  # the admin sees every key's agents
    assert admin.agents.session.retrieve(session_id, agent_id=agent_id).turns[0].turn_id == turn.turn_id
    mine.agents.delete(agent_id)


def test_files_vector_stores_and_vector_dbs_are_private_to_their_key(secured: RunningServer) -> None:
    mine, theirs, admin = _openai(secured, K1), _openai(secured, K2), _openai(secured, ADMIN)
    file_id = mine.files.create(file=("h.txt", io.BytesIO(b"Holidays: 25 days.")), purpose="assistants").id
    vs = mine.vector_stores.create(name="hr", file_ids=[file_id])
    with pytest.raises(openai.NotFoundError):
        theirs.files.retrieve(file_id)
    with pytest.raises(openai.NotFoundError):
        theirs.files.content(file_id)
    with pytest.raises(openai.NotFoundError):
        theirs.vector_stores.retrieve(vs.id)
    with pytest.raises(openai.NotFoundError):
        theirs.vector_stores.search(vs.id, query="holidays")
    with pytest.raises(openai.NotFoundError):
        theirs.vector_stores.files.list(vs.id)
    with pytest.raises(openai.NotFoundError):
        theirs.vector_stores.delete(vs.id)
    with pytest.raises(openai.NotFoundError):
        theirs.vector_stores.create(name="stolen", file_ids=[file_id])
    assert file_id not in [f.id for f in theirs.files.list()]
    assert vs.id not in [s.id for s in theirs.vector_stores.list()]
    assert vs.id in [s.id for s in admin.vector_stores.list()]
    assert "25 days" in mine.vector_stores.search(vs.id, query="holidays").data[0].content[0].text

    stack_mine, stack_theirs = _stack(secured, K1), _stack(secured, K2)
    stack_mine.vector_dbs.register(vector_db_id="k1-db", embedding_model=EMBEDDING_MODEL)
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_theirs.vector_dbs.retrieve("k1-db")
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_theirs.vector_io.query(vector_db_id="k1-db", query="x")
    assert "k1-db" not in [d.identifier for d in stack_theirs.vector_dbs.list()]
    # Shared resources from the run config stay visible to every key.
    assert CHAT_MODEL in [m.identifier for m in stack_theirs.models.list()]
    assert "code-scanner" in [s.identifier for s in stack_theirs.shields.list()]
    assert "builtin::rag" in [g.identifier for g in stack_theirs.toolgroups.list()]
    with pytest.raises(llama_stack_client.PermissionDeniedError):
        stack_theirs.models.unregister(EMBEDDING_MODEL)
    mine.vector_stores.delete(vs.id)
    stack_mine.vector_dbs.unregister("k1-db")


def test_stored_chat_completions_are_private_to_their_key(secured: RunningServer) -> None:
    mine, theirs, admin = _openai(secured, K1), _openai(secured, K2), _openai(secured, ADMIN)
    made = mine.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert mine.chat.completions.retrieve(made.id).id == made.id
    with pytest.raises(openai.NotFoundError):
        theirs.chat.completions.retrieve(made.id)
    assert made.id not in [c.id for c in theirs.chat.completions.list(limit=100)]
    assert made.id in [c.id for c in admin.chat.completions.list(limit=100)]


def test_host_header_and_cors(secured: RunningServer) -> None:
    with _http(secured, K1) as http:
        r = http.get("/v1/models", headers={"Host": "rebound.attacker.example"})
        assert r.status_code == 421 and "server.allowed_hosts" in r.json()["detail"]
        assert http.get("/v1/models", headers={"Host": "localhost"}).status_code == 200
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        r = http.options("/v1/openai/v1/chat/completions", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
        r = http.options("/v1/models", headers={**preflight, "Origin": "http://other.example"})
        assert "access-control-allow-origin" not in r.headers


def test_no_key_reaches_the_log_or_the_state_dir(secured: RunningServer) -> None:
    # Runs last in this module: everything above has been logged and stored by now.
    with _http(secured, "ls-wrong-key-77aa") as http:
        assert http.get("/v1/models").status_code == 401
    secrets = [K1, K2, ADMIN, "ls-wrong-key-77aa", *PROVIDER_KEYS.values()]
    log = secured.log()
    assert "Refused GET /v1/models" in log and '"GET /v1/providers HTTP/1.1" 200' in log
    for secret in secrets:
        assert secret not in log
    stored = [
        p for p in Path(secured.state_dir).rglob("*") if p.is_file() and not p.name.startswith("server-")
    ]
    assert any(p.name == "registry.db" for p in stored)
    for path in stored:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (path, secret)


def test_exposing_without_keys_warns(tmp_path: Path) -> None:
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        f"image_name: tiny\nstate_dir: {tmp_path / 'state'}\n"
        "providers:\n  files:\n    - provider_id: localfs\n      provider_type: inline::localfs\n"
        f"      config: {{storage_dir: {tmp_path / 'files'}}}\n"
        "server:\n  auth:\n    api_keys: ${env.KEYS:=}\n"
    )
    exposed = start_server(tmp_path / "a", config=str(run_yaml), host="0.0.0.0")
    try:
        log = exposed.log()
        assert "WARNING" in log and "exposed beyond loopback on every interface without API keys" in log
        assert "(exposed beyond loopback on every interface; no API keys)" in log
        # Exposed, any Host name may be used (there is no loopback name to insist on).
        assert (
            httpx.get(f"{exposed.base_url}/v1/openai/v1/files", headers={"Host": "box.lan"}).status_code
            == 200
        )
        # CORS is off by default: a preflight gets no CORS answer.
        r = httpx.options(
            f"{exposed.base_url}/v1/openai/v1/files",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in r.headers
    finally:
        exposed.stop()
    keyed = start_server(tmp_path / "b", config=str(run_yaml), host="0.0.0.0", env={"KEYS": "k"})
    try:
        log = keyed.log()
        assert "(exposed beyond loopback on every interface; API keys required)" in log
        assert "without API keys" not in log
        assert httpx.get(f"{keyed.base_url}/v1/openai/v1/files").status_code == 401
    finally:
        keyed.stop()
