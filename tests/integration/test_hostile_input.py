"""Hostile and careless input: every case is a 4xx naming the problem, and the process keeps serving.

Each family here once reached a native library unchecked (a segfault or abort of the whole server) or
a Python error (a 500). After every request the test checks the server process is still alive.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import CHAT_MODEL, EMBEDDING_MODEL, RunningServer

pytestmark = pytest.mark.integration

CHAT = "/v1/inference/chat-completion"
COMPLETION = "/v1/inference/completion"
OPENAI_CHAT = "/v1/openai/v1/chat/completions"
OPENAI_COMPLETION = "/v1/openai/v1/completions"
HI = [{"role": "user", "content": "hi"}]


def _still_serving(server: RunningServer) -> None:
    assert server.process.poll() is None, f"the server died:\n{server.log()[-3000:]}"
    assert httpx.get(f"{server.base_url}/v1/health", timeout=10).status_code == 200


def _bad_request(http: httpx.Client, server: RunningServer, path: str, body: dict | str) -> str:
    if isinstance(body, str):
        r = http.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = http.post(path, json=body)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail
    _still_serving(server)
    return detail


# --- 1. grammars, JSON schemas and token ids are checked before llama.cpp sees them -----------------


@pytest.mark.parametrize(
    ("grammar", "named"),
    [
        ('foo ::= "a"', "no 'root' rule"),
        ("root ::= undefined", "undefined rule(s) undefined"),
        ("garbage ::=", "no 'root' rule"),
        ('root ::= root "a"', "left-recursive"),
        ('root ::= x\nx ::= "b"? root', "left-recursive"),
        ('root ::= "a', "not closed"),
        ('root ::= "\\q"', "unknown escape"),
        ('root ::= "a"{5000}', "repetitions"),
        ("root ::= " + "(" * 500 + '"a"' + ")" * 500, "nest deeper"),
        ("root ::= <[99999999]>", "vocabulary"),
        ("root ::= <not-a-single-token-at-all>", "rejected"),
        ("", "empty"),
    ],
)
def test_bad_grammar_is_400_and_the_server_survives(
    http: httpx.Client, server: RunningServer, grammar: str, named: str
) -> None:
    fmt = {"type": "grammar", "bnf": {"root": grammar}}
    for path, body in (
        (CHAT, {"model_id": CHAT_MODEL, "messages": HI, "response_format": fmt}),
        (COMPLETION, {"model_id": CHAT_MODEL, "content": "hi", "response_format": fmt}),
    ):
        assert named in _bad_request(http, server, path, {**body, "sampling_params": {"max_tokens": 2}})


def test_valid_grammar_still_constrains_output(http: httpx.Client) -> None:
    fmt = {"type": "grammar", "bnf": {"root": 'root ::= ("yes" | "no")'}}
    r = http.post(
        CHAT,
        json={
            "model_id": CHAT_MODEL,
            "messages": HI,
            "response_format": fmt,
            "sampling_params": {"max_tokens": 4},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["completion_message"]["content"] in ("yes", "no")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"type": "string", "pattern": "(((("},
        {"type": "string", "minLength": 200000},
        {"enum": []},
        {"anyOf": []},
        {"type": "lizard"},
    ],
)
def test_bad_json_schema_is_400_on_both_routes(
    http: httpx.Client, server: RunningServer, schema: dict
) -> None:
    _bad_request(
        http,
        server,
        CHAT,
        {
            "model_id": CHAT_MODEL,
            "messages": HI,
            "sampling_params": {"max_tokens": 2},
            "response_format": {"type": "json_schema", "json_schema": schema},
        },
    )
    _bad_request(
        http,
        server,
        OPENAI_CHAT,
        {
            "model": CHAT_MODEL,
            "messages": HI,
            "max_tokens": 2,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        },
    )


@pytest.mark.parametrize(
    "body",
    [
        {"logit_bias": {"99999999": 5}},
        {"logit_bias": {"-1": 5}},
        {"logit_bias": {"token": 5}},
        {"logit_bias": {"5": 500}},
        {"seed": 2**70},
        {"top_logprobs": 50, "logprobs": True},
    ],
)
def test_bad_token_lists_and_numbers_are_400(http: httpx.Client, server: RunningServer, body: dict) -> None:
    _bad_request(http, server, OPENAI_CHAT, {"model": CHAT_MODEL, "messages": HI, "max_tokens": 2, **body})


def test_completion_prompt_of_token_ids_is_400(http: httpx.Client, server: RunningServer) -> None:
    _bad_request(
        http, server, OPENAI_COMPLETION, {"model": CHAT_MODEL, "prompt": [99999999, 5], "max_tokens": 2}
    )


def test_logit_bias_steers_the_output(http: httpx.Client) -> None:
    def reply(bias: dict | None) -> str:
        body = {"model": CHAT_MODEL, "messages": HI, "max_tokens": 3, "temperature": 0}
        r = http.post(OPENAI_CHAT, json={**body, **({"logit_bias": bias} if bias else {})})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    # Token 28 is "," in SmolLM2's vocabulary: pushed to the top, it is all the model can say.
    assert reply({"28": 100}) == ",,,"
    assert reply(None) != ",,,"


# --- 3. client input that used to be a 500 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            OPENAI_CHAT,
            f'{{"model": "{CHAT_MODEL}", "messages": [{{"role": "user", "content": "hi \\ud800"}}]}}',
        ),
        (CHAT, f'{{"model_id": "{CHAT_MODEL}", "messages": [{{"role": "user", "content": "\\udfff"}}]}}'),
        ("/v1/openai/v1/embeddings", f'{{"model": "{EMBEDDING_MODEL}", "input": "a \\ud800 b"}}'),
        ("/v1/inference/embeddings", f'{{"model_id": "{EMBEDDING_MODEL}", "contents": ["\\ud800"]}}'),
        (OPENAI_CHAT, f'{{"model": "{CHAT_MODEL}", "messages": [], "\\ud800": 1}}'),
    ],
)
def test_lone_surrogates_are_400(http: httpx.Client, server: RunningServer, path: str, body: str) -> None:
    assert "surrogate" in _bad_request(http, server, path, body)


def test_paired_surrogates_are_fine(http: httpx.Client) -> None:
    body = f'{{"model": "{EMBEDDING_MODEL}", "input": "llama \\ud83e\\udd99"}}'
    r = http.post("/v1/openai/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_400(http: httpx.Client, server: RunningServer, constant: str) -> None:
    messages = json.dumps(HI)
    body = f'{{"model": "{CHAT_MODEL}", "messages": {messages}, "logit_bias": {{"5": {constant}}}}}'
    assert constant in _bad_request(http, server, OPENAI_CHAT, body)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (OPENAI_COMPLETION, {"model": CHAT_MODEL, "prompt": "", "max_tokens": 2}),
        (COMPLETION, {"model_id": CHAT_MODEL, "content": "", "sampling_params": {"max_tokens": 2}}),
    ],
)
def test_empty_prompt_completes(http: httpx.Client, server: RunningServer, path: str, body: dict) -> None:
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    _still_serving(server)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (OPENAI_CHAT, {"model": CHAT_MODEL, "messages": HI, "stream": "yes"}, "stream"),
        (OPENAI_CHAT, {"model": CHAT_MODEL, "messages": HI, "max_tokens": "5"}, "max_tokens"),
        (OPENAI_CHAT, {"model": CHAT_MODEL, "messages": HI, "max_tokens": 5.5}, "max_tokens"),
        (OPENAI_CHAT, {"model": CHAT_MODEL, "messages": HI, "temperature": "0.5"}, "temperature"),
        (CHAT, {"model_id": CHAT_MODEL, "messages": HI, "stream": "true"}, "stream"),
        (COMPLETION, {"model_id": CHAT_MODEL, "content": "hi", "stream": 1}, "stream"),
    ],
)
def test_lax_coercions_are_400(http: httpx.Client, path: str, body: dict, field: str) -> None:
    r = http.post(path, json=body)
    assert r.status_code == 400, r.text
    assert field in r.json()["detail"]


_WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (OPENAI_CHAT, {"model": CHAT_MODEL, "messages": HI, "tool_choice": "required"}),
        (OPENAI_CHAT, {"model": CHAT_MODEL, "messages": HI, "tool_choice": "auto"}),
        (
            OPENAI_CHAT,
            {
                "model": CHAT_MODEL,
                "messages": HI,
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
        ),
        (
            OPENAI_CHAT,
            {
                "model": CHAT_MODEL,
                "messages": HI,
                "tools": [_WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "get_time"}},
            },
        ),
        (CHAT, {"model_id": CHAT_MODEL, "messages": HI, "tool_choice": "required"}),
        (CHAT, {"model_id": CHAT_MODEL, "messages": HI, "tool_config": {"tool_choice": "get_time"}}),
        (
            CHAT,
            {
                "model_id": CHAT_MODEL,
                "messages": HI,
                "tools": [{"tool_name": "get_weather"}],
                "tool_config": {"tool_choice": "get_time"},
            },
        ),
    ],
)
def test_tool_choice_without_that_tool_is_400(http: httpx.Client, path: str, body: dict) -> None:
    r = http.post(path, json=body)
    assert r.status_code == 400, r.text
    assert "tool" in r.json()["detail"]


def test_tool_names_that_would_break_a_grammar_are_400(http: httpx.Client, server: RunningServer) -> None:
    tool = {"type": "function", "function": {"name": 'a b " c', "parameters": {"type": "object"}}}
    body = {"model": CHAT_MODEL, "messages": HI, "max_tokens": 2, "tools": [tool], "tool_choice": "required"}
    assert "function name" in _bad_request(http, server, OPENAI_CHAT, body)


def test_registering_a_folder_that_is_not_an_embedding_model_is_400(http: httpx.Client, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    r = http.post(
        "/v1/models",
        json={
            "model_id": "not-an-encoder",
            "provider_id": "sentence-transformers",
            "provider_model_id": str(tmp_path),
            "model_type": "embedding",
        },
    )
    assert r.status_code == 400, r.text
    assert str(tmp_path) in r.json()["detail"]
    assert http.get("/v1/models/not-an-encoder").status_code == 404


def test_duplicate_chunk_ids_in_one_insert(http: httpx.Client) -> None:
    for provider in ("chromadb", "sqlite-vec", "chromadb-remote"):
        db = f"dupes-{provider}"
        r = http.post(
            "/v1/vector-dbs",
            json={"vector_db_id": db, "embedding_model": EMBEDDING_MODEL, "provider_id": provider},
        )
        assert r.status_code == 200, r.text
        same_id = [
            {"content": "alpha", "metadata": {"document_id": "d", "chunk_id": "c1"}},
            {"content": "beta", "metadata": {"document_id": "d", "chunk_id": "c1"}},
        ]
        r = http.post("/v1/vector-io/insert", json={"vector_db_id": db, "chunks": same_id})
        assert r.status_code == 400, r.text
        assert "c1" in r.json()["detail"]
        # The same text twice in one document is one chunk, not an error.
        repeated = [{"content": "gamma", "metadata": {"document_id": "d"}}] * 2
        r = http.post("/v1/vector-io/insert", json={"vector_db_id": db, "chunks": repeated})
        assert r.status_code == 200, r.text
        r = http.post("/v1/vector-io/query", json={"vector_db_id": db, "query": "gamma"})
        assert r.status_code == 200
        assert [c["content"] for c in r.json()["chunks"]] == ["gamma"]


# --- 9. a departed client frees the model ----------------------------------------------------------

# EOS and the chat template's end tokens suppressed: the model would write 2000 tokens (~10 s or more).
_ENDLESS = {"max_tokens": 2000, "temperature": 0, "logit_bias": {"0": -100, "1": -100, "2": -100}}


def _send_and_leave(base_url: str, path: str, body: dict, stay_s: float) -> None:
    """Sends a request on a raw socket and closes it after ``stay_s``, as a client that gives up."""
    url = urlsplit(base_url)
    payload = json.dumps(body).encode()
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        time.sleep(stay_s)


def _cancellations(server: RunningServer) -> int:
    return server.log().count("Generation cancelled after")


@pytest.mark.parametrize("stream", [False, True])
def test_client_that_leaves_cancels_its_generation(server: RunningServer, stream: bool) -> None:
    before = _cancellations(server)
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Count."}], "stream": stream}
    _send_and_leave(server.base_url, OPENAI_CHAT, {**body, **_ENDLESS}, stay_s=1.0)
    deadline = time.monotonic() + 30
    while _cancellations(server) == before:
        assert time.monotonic() < deadline, "the generation was not cancelled after the client left"
        time.sleep(0.1)
    line = [x for x in server.log().splitlines() if "Generation cancelled after" in x][-1]
    assert int(line.split("after ")[1].split()[0]) < 2000
    r = httpx.post(
        f"{server.base_url}{OPENAI_CHAT}",
        json={"model": CHAT_MODEL, "messages": HI, "max_tokens": 2},
        timeout=30,
    )
    assert r.status_code == 200


# --- 3. file names outside Latin-1 are kept intact ---------------------------------------------------


@pytest.mark.parametrize("name", ["データ.txt", "résumé.txt", "llama 🦙.md"])
def test_upload_keeps_non_latin1_file_names(http: httpx.Client, name: str) -> None:
    r = http.post(
        "/v1/openai/v1/files", files={"file": (name, b"hello", "text/plain")}, data={"purpose": "assistants"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["filename"] == name
    assert http.get(f"/v1/openai/v1/files/{r.json()['id']}").json()["filename"] == name


def test_upload_reads_rfc5987_file_names(http: httpx.Client) -> None:
    boundary = "llamaboundary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="fallback.txt"; '
        "filename*=UTF-8''%E3%83%87%E3%83%BC%E3%82%BF.txt\r\n"
        "Content-Type: text/plain\r\n\r\nhello\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    r = http.post(
        "/v1/openai/v1/files",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["filename"] == "データ.txt"


def test_dropped_agent_turn_stream_cancels_its_generation(server: RunningServer) -> None:
    # A grammar that forces a long answer: ~1000 tokens if nobody stops it.
    endless = {"type": "grammar", "bnf": {"root": 'root ::= ("llama " | "alpaca "){1000}'}}
    config = {
        "model": CHAT_MODEL,
        "instructions": "Answer.",
        "response_format": endless,
        "sampling_params": {"max_tokens": 1500},
    }
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        agent_id = http.post("/v1/agents", json={"agent_config": config}).json()["agent_id"]
        session_id = http.post(f"/v1/agents/{agent_id}/session", json={"session_name": "s"}).json()[
            "session_id"
        ]
        before = _cancellations(server)
        turn = {"messages": [{"role": "user", "content": "Go."}], "stream": True}
        with http.stream("POST", f"/v1/agents/{agent_id}/session/{session_id}/turn", json=turn) as r:
            assert r.status_code == 200
            deltas = 0
            for line in r.iter_lines():
                deltas += '"step_type":"inference"' in line and '"delta"' in line
                if deltas >= 3:
                    break  # leaving the block drops the connection mid-turn
    deadline = time.monotonic() + 30
    while _cancellations(server) == before:
        assert time.monotonic() < deadline, "the agent turn's generation went on after its client left"
        time.sleep(0.1)


def test_405_lists_every_method_of_the_path(http: httpx.Client) -> None:
    r = http.put("/v1/agents/some-agent")
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET"
    assert r.json()["detail"]
    r = http.delete("/v1/openai/v1/chat/completions")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
