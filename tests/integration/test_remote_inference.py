"""Remote inference against a real engine on loopback: SmolLM2 behind llama-cpp-python's own
OpenAI-compatible server (llama_cpp.server), reached through remote::llama-cpp-server (the `remote`
distribution), remote::vllm and remote::openai-compatible, with the openai SDK and
llama-stack-client talking to our server."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient

from conftest import (
    ENGINE_MODEL,
    Engine,
    RunningServer,
    free_port,
    start_llama_cpp_engine,
    start_server,
)

pytestmark = pytest.mark.integration

VLLM_KEY = "vllm-secret-token-7f3a9c21"
GUARD_MODEL = "Llama-Guard-3-1B"
COMPAT_KEY = "compat-secret-key-1b2d4e88"
# SmolLM2's end tokens (<|endoftext|>, <|im_end|>), banned so a generation runs until it is cut.
NO_END = {"0": -100, "2": -100}


def _openai(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1/openai/v1", api_key="none", max_retries=0, timeout=120
    )


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, llama_cpp_engine: Engine) -> Iterator[RunningServer]:
    """The `remote` distribution, started the way its run.yaml says; SmolLM2 also stands in for the
    Llama Guard model (the engine serves one model under any name; the verdict is grammar-bound)."""
    running = start_server(
        tmp_path_factory.mktemp("remote"),
        config="remote",
        extra_args=(
            "--env",
            f"LLAMA_CPP_SERVER_URL={llama_cpp_engine.url}",
            "--env",
            f"INFERENCE_MODEL={ENGINE_MODEL}",
            "--env",
            f"SAFETY_MODEL={GUARD_MODEL}",
        ),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def doomed_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A second engine, killed by the mid-stream test."""
    engine = start_llama_cpp_engine(tmp_path_factory.mktemp("doomed"))
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def embedding_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """llama_cpp.server with --embedding, serving SmolLM2."""
    engine = start_llama_cpp_engine(tmp_path_factory.mktemp("embedding"), embedding=True)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def engines(
    tmp_path_factory: pytest.TempPathFactory,
    llama_cpp_engine: Engine,
    doomed_engine: Engine,
    embedding_engine: Engine,
) -> Iterator[tuple[RunningServer, str]]:
    """One server with the same engine behind remote::vllm (URL without /v1, with a key) and
    remote::openai-compatible, an engine that is down, and one that will die mid-stream."""
    state = tmp_path_factory.mktemp("engines")
    down_url = f"http://127.0.0.1:{free_port()}/v1"
    run_yaml = state / "run.yaml"
    run_yaml.write_text(
        textwrap.dedent(
            f"""\
            version: 2
            image_name: remote-engines
            state_dir: ${{env.LLAMA_STACK_STATE_DIR}}
            providers:
              inference:
                - provider_id: vllm
                  provider_type: remote::vllm
                  config:
                    url: {llama_cpp_engine.url.removesuffix("/v1")}
                    api_key: ${{env.VLLM_API_TOKEN}}
                - provider_id: compat
                  provider_type: remote::openai-compatible
                  config:
                    url: {llama_cpp_engine.url}
                    api_key: ${{env.COMPAT_KEY}}
                - provider_id: down
                  provider_type: remote::llama-cpp-server
                  config:
                    url: {down_url}
                    max_retries: 1
                - provider_id: doomed
                  provider_type: remote::openai-compatible
                  config:
                    url: {doomed_engine.url}
                    max_retries: 0
                - provider_id: embedder
                  provider_type: remote::llama-cpp-server
                  config:
                    url: {embedding_engine.url}
                - provider_id: prompted
                  provider_type: remote::llama-cpp-server
                  config:
                    url: {llama_cpp_engine.url}
                    tool_calls: prompt
            models:
              - {{model_id: via-vllm, provider_id: vllm, provider_model_id: {ENGINE_MODEL}}}
              - {{model_id: via-compat, provider_id: compat, provider_model_id: {ENGINE_MODEL}}}
              - {{model_id: on-down-engine, provider_id: down, provider_model_id: {ENGINE_MODEL}}}
              - {{model_id: doomed-model, provider_id: doomed, provider_model_id: {ENGINE_MODEL}}}
              - {{model_id: smol-prompted, provider_id: prompted, provider_model_id: {ENGINE_MODEL}}}
              - {{model_id: llama-3.2-prompted, provider_id: prompted, provider_model_id: {ENGINE_MODEL}}}
            """
        )
    )
    running = start_server(
        state / "state", config=str(run_yaml), env={"VLLM_API_TOKEN": VLLM_KEY, "COMPAT_KEY": COMPAT_KEY}
    )
    yield running, down_url
    running.stop()


# --- the remote distribution ----------------------------------------------------------------------


def test_remote_distribution_serves_the_engine_model(remote: RunningServer) -> None:
    models = {m["identifier"]: m for m in httpx.get(f"{remote.base_url}/v1/models").json()["data"]}
    assert models[ENGINE_MODEL]["provider_id"] == "llama-cpp-server"
    assert models["all-MiniLM-L6-v2"]["model_type"] == "embedding"  # embeddings stay local


def test_llama_guard_shield_on_the_remote_engine(remote: RunningServer, llama_cpp_engine: Engine) -> None:
    """The `remote` distribution's llama-guard shield judges through the engine, its answer bound by
    the verdict grammar (sent as llama.cpp's `grammar`), and gives a well-formed verdict."""
    shields = httpx.get(f"{remote.base_url}/v1/shields", timeout=30).json()["data"]
    assert {s["identifier"]: s["provider_resource_id"] for s in shields}["llama-guard"] == GUARD_MODEL
    chats = engine_chats(llama_cpp_engine)
    response = httpx.post(
        f"{remote.base_url}/v1/safety/run-shield",
        json={
            "shield_id": "llama-guard",
            "messages": [{"role": "user", "content": "How do I bake bread?"}],
            "params": {},
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert engine_chats(llama_cpp_engine) == chats + 1  # judged by the remote engine
    violation = response.json()["violation"]
    if violation is not None:
        codes = violation["metadata"]["violation_type"].split(",")
        assert all(c.startswith("S") and c[1:].isdigit() for c in codes)


def engine_chats(engine: Engine) -> int:
    return engine.log_path.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')


def test_chat_through_the_openai_sdk(remote: RunningServer) -> None:
    client = _openai(remote)
    answer = client.chat.completions.create(
        model=ENGINE_MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
        seed=1,
    )
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    assert answer.model == ENGINE_MODEL


def test_streamed_chat_matches_the_whole_answer(remote: RunningServer) -> None:
    client = _openai(remote)
    request = {
        "model": ENGINE_MODEL,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 10,
        "temperature": 0,
    }
    client.chat.completions.create(**request)  # llama_cpp.server's first answer to a prompt may differ
    whole = client.chat.completions.create(**request).choices[0].message.content
    chunks = list(client.chat.completions.create(**request, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])


def test_completion_with_logprobs(remote: RunningServer) -> None:
    answer = _openai(remote).completions.create(
        model=ENGINE_MODEL, prompt="The sky is", max_tokens=4, temperature=0, logprobs=2
    )
    choice = answer.choices[0]
    assert choice.text
    assert choice.logprobs is not None


def test_json_schema_response(remote: RunningServer) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    answer = _openai(remote).chat.completions.create(
        model=ENGINE_MODEL,
        messages=[{"role": "user", "content": "Invent a person; answer in JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    person = json.loads(answer.choices[0].message.content or "")
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


def test_native_routes_through_llama_stack_client(remote: RunningServer) -> None:
    client = LlamaStackClient(base_url=remote.base_url, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Say hi."}]
    greedy = {"strategy": {"type": "greedy"}, "max_tokens": 8}
    client.inference.chat_completion(model_id=ENGINE_MODEL, messages=messages, sampling_params=greedy)
    whole = client.inference.chat_completion(model_id=ENGINE_MODEL, messages=messages, sampling_params=greedy)
    assert whole.completion_message.content
    assert whole.completion_message.stop_reason in ("end_of_turn", "out_of_tokens")
    events = list(
        client.inference.chat_completion(
            model_id=ENGINE_MODEL, messages=messages, sampling_params=greedy, stream=True
        )
    )
    text = "".join(e.event.delta.text for e in events if e.event.delta.type == "text")
    assert text == whole.completion_message.content
    assert events[-1].event.event_type == "complete"


def test_agent_turn_on_the_remote_model(remote: RunningServer) -> None:
    client = LlamaStackClient(base_url=remote.base_url, max_retries=0, timeout=120)
    agent_id = client.agents.create(
        agent_config={
            "model": ENGINE_MODEL,
            "instructions": "Answer in one short sentence.",
            "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 16},
        }
    ).agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="s").session_id
    turn = client.agents.turn.create(
        agent_id=agent_id,
        session_id=session_id,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=False,
    )
    assert [s.step_type for s in turn.steps] == ["inference"]
    assert turn.output_message.content


# --- several engines in one server ------------------------------------------------------------------


@pytest.mark.parametrize("model", ["via-vllm", "via-compat"])
def test_the_same_engine_through_vllm_and_openai_compatible(
    engines: tuple[RunningServer, str], model: str
) -> None:
    server, _ = engines
    client = _openai(server)
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=6, temperature=0
    )
    assert answer.choices[0].message.content
    streamed = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=6, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_a_model_the_engine_does_not_serve_is_refused_naming_the_provider(
    engines: tuple[RunningServer, str],
) -> None:
    server, _ = engines
    response = httpx.post(
        f"{server.base_url}/v1/models",
        json={"model_id": "ghost", "provider_id": "vllm", "provider_model_id": "no-such-model"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "remote::vllm" in detail and "no-such-model" in detail and ENGINE_MODEL in detail
    assert httpx.get(f"{server.base_url}/v1/models/ghost").status_code == 404


def test_an_engine_error_answer_is_a_502_naming_the_provider_with_its_message(
    engines: tuple[RunningServer, str],
) -> None:
    # llama_cpp.server takes a schema only as {"type": "json_object", "schema": ...}; the generic
    # adapter sends OpenAI's json_schema format, which it refuses, with an HTTP 500 (not 4xx).
    server, _ = engines
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    response = httpx.post(
        f"{server.base_url}/v1/openai/v1/chat/completions",
        json={
            "model": "via-compat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        },
        timeout=60,
    )
    assert response.status_code == 502, response.text
    detail = response.json()["detail"]
    assert "remote::openai-compatible answered HTTP 500" in detail and "json_object" in detail


def test_an_engine_down_at_start_leaves_the_server_up_and_requests_get_503(
    engines: tuple[RunningServer, str],
) -> None:
    server, down_url = engines
    assert httpx.get(f"{server.base_url}/v1/health").status_code == 200
    assert "remote::llama-cpp-server" in server.log() and down_url in server.log()  # which engine is down
    for stream in (False, True):
        response = httpx.post(
            f"{server.base_url}/v1/openai/v1/chat/completions",
            json={
                "model": "on-down-engine",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": stream,
            },
            timeout=60,
        )
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        detail = response.json()["detail"]
        assert "remote::llama-cpp-server" in detail and down_url in detail
    assert httpx.get(f"{server.base_url}/v1/health").status_code == 200


def _health(server: RunningServer, provider_id: str) -> dict[str, object]:
    response = httpx.get(f"{server.base_url}/v1/providers/{provider_id}", timeout=30)
    assert response.status_code == 200, response.text
    health: dict[str, object] = response.json()["health"]
    return health


def test_an_engine_down_at_start_shows_in_its_health_and_is_used_once_it_comes_up(
    engines: tuple[RunningServer, str], tmp_path: Path
) -> None:
    server, down_url = engines
    health = _health(server, "down")
    assert health["status"] == "Error"
    assert "remote::llama-cpp-server" in str(health["message"]) and down_url in str(health["message"])
    assert _health(server, "compat") == {"status": "OK", "served_models": [ENGINE_MODEL]}
    late = start_llama_cpp_engine(tmp_path, port=int(down_url.rsplit(":", 1)[1].split("/")[0]))
    try:
        assert _health(server, "down") == {"status": "OK", "served_models": [ENGINE_MODEL]}
        answer = _openai(server).chat.completions.create(
            model="on-down-engine", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert answer.choices[0].message.content is not None
    finally:
        late.stop()


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_prompted_tool_calls_on_an_engine_without_tool_support(engines: tuple[RunningServer, str]) -> None:
    """tool_calls: prompt. SmolLM2 is no Llama: the tools go into its system message, the forced call
    is the engine's JSON-schema decoding, and the stack parses the call out of the text."""
    server, _ = engines
    client = _openai(server)
    forced = {"type": "function", "function": {"name": "get_weather"}}
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    answer = client.chat.completions.create(
        model="smol-prompted", messages=asked, tools=[WEATHER], tool_choice=forced, max_tokens=60
    )
    calls = answer.choices[0].message.tool_calls
    assert (
        answer.choices[0].finish_reason == "tool_calls" and calls and calls[0].function.name == "get_weather"
    )
    assert isinstance(json.loads(calls[0].function.arguments)["city"], str)
    chunks = list(
        client.chat.completions.create(
            model="smol-prompted",
            messages=asked,
            tools=[WEATHER],
            tool_choice=forced,
            max_tokens=60,
            stream=True,
        )
    )
    streamed = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(streamed) == 1 and streamed[0].function.name == "get_weather"


def _raw_completions(engine: Engine) -> int:
    return engine.log_path.read_text(errors="replace").count('"POST /v1/completions HTTP/1.1" 200')


def test_prompted_tool_calls_for_a_llama_model_use_its_format_over_the_raw_route(
    engines: tuple[RunningServer, str], llama_cpp_engine: Engine
) -> None:
    """A Llama 3.2 id: Meta's prompt format goes to the engine's /completions, and the answer (forced
    here by a grammar into Llama 3.2's python-list call syntax) is parsed as a call."""
    server, _ = engines
    grammar = 'root ::= "[get_weather(city=\\"Paris\\")]"'
    body = {
        "model_id": "llama-3.2-prompted",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [
            {
                "tool_name": "get_weather",
                "description": "The weather in a city.",
                "parameters": {"city": {"param_type": "string", "required": True}},
            }
        ],
        "response_format": {"type": "grammar", "bnf": {"root": grammar}},
        "sampling_params": {"max_tokens": 40},
    }
    before = _raw_completions(llama_cpp_engine)
    response = httpx.post(f"{server.base_url}/v1/inference/chat-completion", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert _raw_completions(llama_cpp_engine) == before + 1  # not the engine's chat route
    message = response.json()["completion_message"]
    assert [(c["tool_name"], c["arguments"]) for c in message["tool_calls"]] == [
        ("get_weather", {"city": "Paris"})
    ]
    # The tool's result goes back in Meta's format (an ipython turn), and the answer is text.
    followup = {
        **body,
        "messages": [
            *body["messages"],
            {
                "role": "assistant",
                "content": "",
                "stop_reason": "end_of_message",
                "tool_calls": message["tool_calls"],
            },
            {"role": "tool", "call_id": message["tool_calls"][0]["call_id"], "content": "Sunny, 21 C"},
        ],
        "response_format": {"type": "grammar", "bnf": {"root": 'root ::= "It is sunny."'}},
    }
    response = httpx.post(f"{server.base_url}/v1/inference/chat-completion", json=followup, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["completion_message"]["content"] == "It is sunny."
    assert response.json()["completion_message"]["tool_calls"] == []


def test_embeddings_from_an_engine_that_does_not_pool_them_are_a_clear_502(
    engines: tuple[RunningServer, str],
) -> None:
    """llama_cpp.server (0.3.x) has no pooling setting, and SmolLM2's GGUF names none, so it answers
    one vector per token. The adapter refuses that answer, naming the engine and what to set; one
    vector per input (engines that pool) is covered by test_remote_engine_answers.py."""
    server, _ = engines
    registered = httpx.post(
        f"{server.base_url}/v1/models",
        json={
            "model_id": "smol-embed",
            "provider_id": "embedder",
            "provider_model_id": ENGINE_MODEL,
            "model_type": "embedding",
        },
        timeout=60,
    )
    assert registered.status_code == 200, registered.text
    assert "embedding_dimension" not in registered.json()["metadata"]  # the probe got no vector
    for path, body in (
        ("/v1/openai/v1/embeddings", {"model": "smol-embed", "input": ["The cat sat on the mat."]}),
        ("/v1/inference/embeddings", {"model_id": "smol-embed", "contents": ["The cat sat on the mat."]}),
    ):
        response = httpx.post(f"{server.base_url}{path}", json=body, timeout=60)
        assert response.status_code == 502, response.text
        detail = response.json()["detail"]
        assert "remote::llama-cpp-server" in detail and "pool" in detail


def test_keys_never_show_in_providers_or_logs(engines: tuple[RunningServer, str]) -> None:
    server, _ = engines
    _openai(server).chat.completions.create(
        model="via-vllm", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    providers = httpx.get(f"{server.base_url}/v1/providers").text
    for key in (VLLM_KEY, COMPAT_KEY):
        assert key not in providers
        assert key not in server.log()
    configs = {p["provider_id"]: p["config"] for p in json.loads(providers)["data"]}
    assert configs["vllm"]["api_key"] == "********" and configs["compat"]["api_key"] == "********"


def test_engine_killed_mid_stream_ends_the_stream_with_an_error_event(
    engines: tuple[RunningServer, str], doomed_engine: Engine
) -> None:
    server, _ = engines
    body = {
        "model": "doomed-model",
        "messages": [{"role": "user", "content": "Count from one to one thousand."}],
        "max_tokens": 1500,
        "logit_bias": NO_END,
        "stream": True,
    }
    events: list[str] = []
    with httpx.stream("POST", f"{server.base_url}/v1/openai/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line.removeprefix("data: "))
            if len(events) == 3:
                doomed_engine.stop()  # SIGKILL: the connection breaks mid-answer
    errors = [json.loads(e)["error"] for e in events if e.startswith('{"error"')]
    assert len(errors) == 1, events[-3:]
    assert "remote::openai-compatible" in errors[0]["message"]
    assert httpx.get(f"{server.base_url}/v1/health").status_code == 200
    after = httpx.post(
        f"{server.base_url}/v1/openai/v1/chat/completions",
        json={"model": "doomed-model", "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert after.status_code == 503 and "remote::openai-compatible" in after.json()["detail"]
    health = _health(server, "doomed")
    assert health["status"] == "Error" and doomed_engine.url in str(health["message"])
    # The other engines are unaffected.
    assert (
        _openai(server)
        .chat.completions.create(
            model="via-compat", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        .choices[0]
        .message.content
        is not None
    )
