"""How the remote adapter handles what real engines answer that SmolLM2 behind llama_cpp.server does
not produce on demand: 401, 404, 429/503 with Retry-After, 500, and tool calls streamed in pieces.
The engine is a scripted OpenAI-style HTTP server on loopback; our server is the real one.

vLLM's own request fields (guided decoding, top_k, repetition_penalty) are checked here at the
request-shape level only: no vLLM runs on this machine (it needs a GPU or a long CPU build)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from json_engine import JSONHandler, LoopbackServer

from conftest import RunningServer, start_server

pytestmark = pytest.mark.integration

KEY = "engine-secret-key-5c9e0a77"


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # a JSON answer, or a list of chunks streamed as SSE


def _completion(text: str = "ok", tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text if not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "fake",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def _embeddings(texts: list[str]) -> dict[str, Any]:
    # Listed in reverse: the adapter orders them by index.
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(t)), 0.5, -1.0]}
        for i, t in enumerate(texts)
    ]
    return {
        "object": "list",
        "data": data[::-1],
        "model": "fake",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }


class ScriptedEngine(LoopbackServer):
    """Answers POSTs from a queue of scripted answers (then plain 'ok'), recording each request."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.requests: list[tuple[str, dict[str, Any], str]] = []  # path, body, Authorization
        engine = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                engine.requests.append((self.path, body, self.headers.get("Authorization", "")))
                if engine.script:
                    answer = engine.script.pop(0)
                elif self.path.endswith("/embeddings"):
                    answer = Answer(body=_embeddings(body["input"]))
                else:
                    answer = Answer(body=_completion())
                if isinstance(answer.body, list):
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in answer.body:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.close_connection = True
                    return
                self._json(answer.status, answer.body or {"error": {"message": "scripted"}}, answer.headers)

        super().__init__(Handler)


@pytest.fixture(scope="module")
def engine() -> Iterator[ScriptedEngine]:
    scripted = ScriptedEngine()
    yield scripted
    scripted.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, engine: ScriptedEngine) -> Iterator[RunningServer]:
    state = tmp_path_factory.mktemp("scripted")
    run_yaml = state / "run.yaml"
    run_yaml.write_text(
        textwrap.dedent(
            f"""\
            version: 2
            image_name: scripted-engine
            state_dir: ${{env.LLAMA_STACK_STATE_DIR}}
            providers:
              inference:
                - provider_id: engine
                  provider_type: remote::openai-compatible
                  config:
                    url: {engine.url}
                    api_key: ${{env.ENGINE_KEY}}
                    max_retries: 2
                - provider_id: hosted
                  provider_type: remote::together
                  config:
                    url: {engine.url}
                - provider_id: vllm
                  provider_type: remote::vllm
                  config:
                    url: {engine.url}
                - provider_id: openai
                  provider_type: remote::openai
                  config:
                    url: {engine.url}
                    api_key: sk-scripted
            models:
              - {{model_id: m, provider_id: engine, provider_model_id: fake}}
              - {{model_id: t, provider_id: hosted, provider_model_id: fake}}
              - {{model_id: v, provider_id: vllm, provider_model_id: fake}}
              - {{model_id: o, provider_id: openai, provider_model_id: fake}}
            """
        )
    )
    running = start_server(state / "state", config=str(run_yaml), env={"ENGINE_KEY": KEY})
    yield running
    running.stop()


@pytest.fixture()
def fresh(engine: ScriptedEngine) -> ScriptedEngine:
    engine.script.clear()
    engine.requests.clear()
    return engine


def _chat(stack: RunningServer, **extra: Any) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(f"{stack.base_url}/v1/openai/v1/chat/completions", json=body, timeout=60)


def test_the_key_goes_to_the_engine_and_the_model_by_its_engine_name(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    assert _chat(stack).status_code == 200
    path, body, auth = fresh.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "fake" and auth == f"Bearer {KEY}"


def test_429_with_a_short_retry_after_is_retried(stack: RunningServer, fresh: ScriptedEngine) -> None:
    fresh.script = [Answer(429, {"Retry-After": "1"}, {"error": {"message": "slow down"}})]
    response = _chat(stack)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "ok"
    assert len(fresh.requests) == 2


def test_503_with_a_long_retry_after_is_passed_on(stack: RunningServer, fresh: ScriptedEngine) -> None:
    fresh.script = [Answer(503, {"Retry-After": "30"}, {"error": {"message": "overloaded"}})]
    response = _chat(stack)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert "remote::openai-compatible" in response.json()["detail"]
    assert len(fresh.requests) == 1


def test_retries_are_bounded(stack: RunningServer, fresh: ScriptedEngine) -> None:
    fresh.script = [Answer(503, {"Retry-After": "1"}, {"error": {"message": "busy"}}) for _ in range(5)]
    response = _chat(stack)
    assert response.status_code == 503
    assert len(fresh.requests) == 3  # the request and max_retries (2) more


def test_a_500_is_not_retried(stack: RunningServer, fresh: ScriptedEngine) -> None:
    fresh.script = [Answer(500, {}, {"error": {"message": "engine exploded"}})]
    response = _chat(stack)
    assert response.status_code == 502
    assert "engine exploded" in response.json()["detail"]
    assert len(fresh.requests) == 1


def test_a_rejected_key_says_what_to_check_and_never_shows_it(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    fresh.script = [Answer(401, {}, {"error": {"message": f"invalid key {KEY}"}})]
    response = _chat(stack)
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "remote::openai-compatible rejected the API key" in detail and "api_key" in detail
    assert KEY not in response.text and KEY not in stack.log()


def test_a_404_names_the_provider_and_the_model(stack: RunningServer, fresh: ScriptedEngine) -> None:
    fresh.script = [Answer(404, {}, {"error": {"message": "The model `fake` does not exist."}})]
    response = _chat(stack)
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "remote::openai-compatible" in detail and "'fake'" in detail and "provider_model_id" in detail


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def _delta_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_streamed_tool_call_deltas_arrive_as_one_whole_call(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    call = {"index": 0, "id": "call_9", "type": "function"}
    fresh.script = [
        Answer(
            body=[
                _delta_chunk({"role": "assistant", "content": None}),
                _delta_chunk(
                    {"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]}
                ),
                _delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
                _delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
                _delta_chunk({}, finish="tool_calls"),
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "fake",
                    "choices": [],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
                },
            ]
        )
    ]
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1/openai/v1", api_key="none", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=TOOLS,
            tool_choice="auto",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(calls) == 1
    assert calls[0].id == "call_9" and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    usage = [c.usage for c in chunks if c.usage]
    assert usage and usage[-1].prompt_tokens == 12 and usage[-1].completion_tokens == 9
    # What the engine was asked: the tools, the choice, and usage at the end of the stream.
    _, body, _ = fresh.requests[0]
    assert body["tools"][0]["function"]["name"] == "get_weather" and body["tool_choice"] == "auto"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_tool_results_go_back_to_the_engine_as_openai_messages(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "Sunny, 21 C"},
    ]
    response = httpx.post(
        f"{stack.base_url}/v1/openai/v1/chat/completions",
        json={
            "model": "m",
            "messages": messages,
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "temperature": 0.2,
            "max_tokens": 5,
            "stop": ["\n"],
            "seed": 3,
            "logprobs": True,
            "top_logprobs": 2,
            "response_format": {"type": "json_object"},
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    _, body, _ = fresh.requests[0]
    assert body["messages"][1]["tool_calls"][0]["id"] == "call_9"
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_9", "content": "Sunny, 21 C"}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (body["temperature"], body["max_tokens"], body["stop"], body["seed"]) == (0.2, 5, ["\n"], 3)
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["response_format"] == {"type": "json_object"}


def test_a_whole_tool_call_answer(stack: RunningServer, fresh: ScriptedEngine) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }
    fresh.script = [Answer(body=_completion(tool_calls=[call]))]
    response = _chat(stack, tools=TOOLS)
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Oslo"}',
    }


REQUEST_KEY = "tg-request-key-90ab31"
PROVIDER_DATA = "X-LlamaStack-Provider-Data"


def test_a_hosted_provider_without_a_key_says_how_to_send_one(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    response = _chat(stack, model="t")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "TOGETHER_API_KEY" in detail and "together_api_key" in detail and PROVIDER_DATA in detail
    assert fresh.requests == []  # nothing was sent without a key


def test_a_request_may_bring_its_own_key_in_provider_data(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    headers = {PROVIDER_DATA: json.dumps({"together_api_key": REQUEST_KEY})}
    body = {"model": "t", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{stack.base_url}/v1/openai/v1/chat/completions"
    assert httpx.post(url, json=body, headers=headers, timeout=60).status_code == 200
    with httpx.stream("POST", url, json={**body, "stream": True}, headers=headers, timeout=60) as streamed:
        assert streamed.status_code == 200
        streamed.read()
    assert [auth for _, _, auth in fresh.requests] == [f"Bearer {REQUEST_KEY}"] * 2
    # The caller's key rejected: a 400 for the caller to fix, the key never echoed.
    fresh.script = [Answer(401, {}, {"error": {"message": f"bad key {REQUEST_KEY}"}})]
    rejected = httpx.post(url, json=body, headers=headers, timeout=60)
    assert rejected.status_code == 400
    assert "together_api_key" in rejected.json()["detail"] and REQUEST_KEY not in rejected.text
    assert REQUEST_KEY not in stack.log()


def test_malformed_provider_data_is_a_400(stack: RunningServer, fresh: ScriptedEngine) -> None:
    response = httpx.post(
        f"{stack.base_url}/v1/openai/v1/chat/completions",
        json={"model": "t", "messages": [{"role": "user", "content": "hi"}]},
        headers={PROVIDER_DATA: "{not json"},
        timeout=60,
    )
    assert response.status_code == 400 and PROVIDER_DATA in response.json()["detail"]


def test_embeddings_on_the_engine(stack: RunningServer, fresh: ScriptedEngine) -> None:
    registered = httpx.post(
        f"{stack.base_url}/v1/models",
        json={
            "model_id": "remote-embed",
            "provider_id": "engine",
            "provider_model_id": "fake",
            "model_type": "embedding",
        },
        timeout=30,
    )
    assert registered.status_code == 200, registered.text
    assert registered.json()["metadata"]["embedding_dimension"] == 3  # read from the engine's answer
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1/openai/v1", api_key="none", max_retries=0)
    answer = client.embeddings.create(model="remote-embed", input=["a", "abcd"])
    assert [d.embedding[0] for d in answer.data] == [1.0, 4.0]
    assert answer.usage.prompt_tokens == 4
    assert fresh.requests[-1][1]["input"] == ["a", "abcd"]


GRAMMAR = 'root ::= "yes" | "no"'
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
TOP_K = {"strategy": {"type": "top_k", "top_k": 5}, "repetition_penalty": 1.3, "max_tokens": 4}


def _native(stack: RunningServer, route: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/v1/inference/{route}", json=body, timeout=60)


def test_vllm_gets_guided_decoding_and_its_sampling_fields(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    grammar = {"type": "grammar", "bnf": {"root": GRAMMAR}}
    assert _native(
        stack, "completion", {"model_id": "v", "content": "ok?", "response_format": grammar}
    ).is_success
    schema = {"type": "json_schema", "json_schema": SCHEMA}
    assert _native(
        stack, "completion", {"model_id": "v", "content": "ok?", "response_format": schema}
    ).is_success
    chat = {"model_id": "v", "messages": [{"role": "user", "content": "ok?"}], "sampling_params": TOP_K}
    assert _native(stack, "chat-completion", {**chat, "response_format": grammar}).is_success
    (p1, b1, _), (p2, b2, _), (p3, b3, _) = fresh.requests
    assert p1 == "/v1/completions" and b1["guided_grammar"] == GRAMMAR
    assert p2 == "/v1/completions" and b2["guided_json"] == SCHEMA
    assert p3 == "/v1/chat/completions" and b3["guided_grammar"] == GRAMMAR
    assert (b3["top_k"], b3["repetition_penalty"], b3["max_tokens"]) == (5, 1.3, 4)


def test_an_openai_schema_goes_to_vllm_as_its_response_format(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
    assert _chat(stack, model="v", response_format=response_format).status_code == 200
    body = fresh.requests[0][1]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA


def test_a_knob_the_engine_lacks_is_left_out_and_logged_once(
    stack: RunningServer, fresh: ScriptedEngine
) -> None:
    chat = {"model_id": "o", "messages": [{"role": "user", "content": "hi"}], "sampling_params": TOP_K}
    for _ in range(2):
        assert _native(stack, "chat-completion", chat).status_code == 200
    assert all("top_k" not in body and "repetition_penalty" not in body for _, body, _ in fresh.requests)
    log = stack.log()
    assert log.count("remote::openai at") and log.count("takes no top_k") == 1
    assert log.count("takes no repetition_penalty") == 1
    grammar = {"type": "grammar", "bnf": {"root": GRAMMAR}}
    refused = _native(stack, "completion", {"model_id": "o", "content": "ok?", "response_format": grammar})
    assert refused.status_code == 400 and "GBNF" in refused.json()["detail"]
