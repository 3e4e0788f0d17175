"""Model discovery against real engines on loopback (llama_cpp.server serving SmolLM2): the models an
engine lists are registered on demand (POST /v1/models:refresh) or at start and then periodically
(refresh_models); an engine down at start leaves the server up, its models answer 503 naming it,
and it is taken in once it answers; a registered model the engine stopped serving is a clear 404."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import ENGINE_MODEL, Engine, RunningServer, free_port, start_llama_cpp_engine, start_server

pytestmark = pytest.mark.integration

LATE_KEY = "late-engine-token-5c81d0e2"


@pytest.fixture(scope="module")
def late_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def discovery(
    tmp_path_factory: pytest.TempPathFactory, llama_cpp_engine: Engine, late_port: int
) -> Iterator[RunningServer]:
    """`manual` lists its engine only when asked; `late` (remote::vllm, refresh_models on, every
    second) has no engine yet, and `pinned` is registered on it by hand."""
    state = tmp_path_factory.mktemp("discovery")
    run_yaml = state / "run.yaml"
    run_yaml.write_text(
        textwrap.dedent(
            f"""\
            version: 2
            image_name: discovery
            state_dir: ${{env.LLAMA_STACK_STATE_DIR}}
            providers:
              inference:
                - provider_id: manual
                  provider_type: remote::openai-compatible
                  config:
                    url: {llama_cpp_engine.url}
                - provider_id: late
                  provider_type: remote::vllm
                  config:
                    url: http://127.0.0.1:{late_port}
                    api_key: ${{env.LATE_KEY}}
                    refresh_models: true
                    refresh_interval_s: 1
                    max_retries: 0
            models:
              - {{model_id: pinned, provider_id: late, provider_model_id: late-a}}
            """
        )
    )
    running = start_server(state / "state", config=str(run_yaml), env={"LATE_KEY": LATE_KEY})
    yield running
    running.stop()


def _refresh(server: RunningServer, provider_id: str | None = None) -> httpx.Response:
    body = {"provider_id": provider_id} if provider_id else {}
    return httpx.post(f"{server.base_url}/v1/models:refresh", json=body, timeout=30)


def _models(server: RunningServer) -> dict[str, dict[str, Any]]:
    response = httpx.get(f"{server.base_url}/v1/models", timeout=10)
    assert response.status_code == 200, response.text
    return {m["identifier"]: m for m in response.json()["data"]}


def _chat(server: RunningServer, model: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/openai/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
            "stream": stream,
        },
        timeout=60,
    )


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.2)


def test_refresh_on_demand_registers_what_the_engine_serves(discovery: RunningServer) -> None:
    server = discovery
    assert not [m for m in _models(server).values() if m["provider_id"] == "manual"]  # refresh_models off

    response = _refresh(server, "manual")
    assert response.status_code == 200, response.text
    [result] = response.json()["data"]
    assert result["provider_id"] == "manual" and result["status"] == "OK", result
    assert (
        result["served"] == [ENGINE_MODEL] and result["added"] == [ENGINE_MODEL] and result["removed"] == []
    )

    model = _models(server)[ENGINE_MODEL]
    assert model["provider_id"] == "manual" and model["provider_resource_id"] == ENGINE_MODEL
    assert model["metadata"]["discovered"] is True and model["model_type"] == "llm"
    client = openai.OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key="none", max_retries=0)
    answer = client.chat.completions.create(
        model=ENGINE_MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=3
    )
    assert answer.choices[0].message.content is not None

    [again] = _refresh(server, "manual").json()["data"]  # nothing changed on the engine
    assert again["added"] == [] and again["removed"] == [] and again["unchanged"] == [ENGINE_MODEL]

    # Unregistered by hand, it comes back at the next refresh; registered by hand, it is no longer
    # a discovered model (and no refresh removes it).
    assert httpx.delete(f"{server.base_url}/v1/models/{ENGINE_MODEL}").status_code == 200
    assert ENGINE_MODEL not in _models(server)
    assert _refresh(server, "manual").json()["data"][0]["added"] == [ENGINE_MODEL]
    registered = httpx.post(
        f"{server.base_url}/v1/models",
        json={"model_id": ENGINE_MODEL, "provider_id": "manual", "metadata": {"owner": "me"}},
        timeout=30,
    )
    assert registered.status_code == 200, registered.text
    assert _models(server)[ENGINE_MODEL]["metadata"] == {"owner": "me"}
    [after] = _refresh(server, "manual").json()["data"]
    assert after["added"] == [] and after["unchanged"] == [] and after["removed"] == []
    assert _models(server)[ENGINE_MODEL]["metadata"] == {"owner": "me"}


def test_refresh_refuses_what_it_cannot_do(discovery: RunningServer) -> None:
    server = discovery
    missing = _refresh(server, "nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    bad = httpx.post(f"{server.base_url}/v1/models:refresh", json={"provider_id": 3}, timeout=10)
    assert bad.status_code == 400, bad.text
    # Registering a name the engine does not serve says what it does serve.
    refused = httpx.post(
        f"{server.base_url}/v1/models",
        json={"model_id": "ghost", "provider_id": "manual", "provider_model_id": "no-such-model"},
        timeout=30,
    )
    assert refused.status_code == 400, refused.text
    detail = refused.json()["detail"]
    assert "remote::openai-compatible" in detail and "no-such-model" in detail and ENGINE_MODEL in detail


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llamastack.cli.main", "model", "refresh", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_the_cli_asks_the_server(discovery: RunningServer) -> None:
    out = _cli("--url", discovery.base_url, "--provider", "manual", "--json")
    assert out.returncode == 0, out.stderr
    [result] = json.loads(out.stdout)
    assert result["provider_id"] == "manual" and result["served"] == [ENGINE_MODEL]
    table = _cli("--url", discovery.base_url, "--provider", "manual")
    assert table.returncode == 0 and "manual" in table.stdout and ENGINE_MODEL in table.stdout
    unknown = _cli("--url", discovery.base_url, "--provider", "nope")
    assert unknown.returncode == 1 and "404" in unknown.stderr and "nope" in unknown.stderr
    nobody = _cli("--url", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 1 and "Could not reach the server" in nobody.stderr
    assert "Traceback" not in unknown.stderr + nobody.stderr


def test_an_engine_down_at_start_is_taken_in_once_it_answers_and_its_changes_followed(
    discovery: RunningServer, late_port: int, tmp_path: Path
) -> None:
    server = discovery
    late_url = f"http://127.0.0.1:{late_port}/v1"
    # Down: the server is up, the log names the engine, requests to its model are 503 naming it.
    assert httpx.get(f"{server.base_url}/v1/health").json() == {"status": "OK"}
    assert "'late'" in server.log() and late_url in server.log()
    for stream in (False, True):
        started = time.monotonic()
        response = _chat(server, "pinned", stream=stream)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        detail = response.json()["detail"]
        assert "remote::vllm" in detail and late_url in detail and "running" in detail
        assert time.monotonic() - started < 10
    [down] = _refresh(server, "late").json()["data"]
    assert down["status"] == "Error" and late_url in down["message"]
    assert "late-b" not in _models(server)

    # Up, serving late-a and late-b: late-b is discovered by the background refresh; late-a is not
    # registered twice (pinned maps to it), and pinned answers now.
    engine = start_llama_cpp_engine(tmp_path, port=late_port, aliases=("late-a", "late-b"))
    try:
        _wait_for(lambda: "late-b" in _models(server), "late-b discovered")
        models = _models(server)
        assert models["late-b"]["provider_id"] == "late" and models["late-b"]["metadata"]["discovered"]
        assert "late-a" not in models and models["pinned"]["provider_resource_id"] == "late-a"
        assert _chat(server, "pinned").status_code == 200
        assert _chat(server, "late-b").status_code == 200
    finally:
        engine.stop()

    # Back with other models: the discovered late-b goes, late-c comes; pinned stays registered but
    # its requests are a 404 saying what the engine serves (llama_cpp.server itself would have
    # answered with its default model).
    engine = start_llama_cpp_engine(tmp_path, port=late_port, aliases=("late-c",))
    try:
        _wait_for(
            lambda: "late-c" in _models(server) and "late-b" not in _models(server), "late-c for late-b"
        )
        assert "pinned" in _models(server)
        for stream in (False, True):
            response = _chat(server, "pinned", stream=stream)
            assert response.status_code == 404, response.text
            detail = response.json()["detail"]
            assert (
                "remote::vllm" in detail
                and late_url in detail
                and "'late-a'" in detail
                and "late-c" in detail
            )
        assert _chat(server, "late-c").status_code == 200
        log = server.log()
        assert "late-b" in log and "no longer listed" in log
        assert LATE_KEY not in log  # the engine's key is never logged
    finally:
        engine.stop()
