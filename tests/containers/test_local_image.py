"""The `local` distribution image: built from a clean checkout with `llama-stack build`, run by a
real Docker engine with its port published on 127.0.0.1, driven by the official client.

The engine, the clean clone and the waiting are in conftest.py, shared with the other images' tests.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import build_distribution, wait_healthy
from conftest import CHAT_MODEL, EMBEDDING_MODEL, free_port

pytestmark = pytest.mark.docker

TAG = "llamastack-local:test"
SIZE_LIMIT = 600 * 10**6
GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 20}
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("context")


@pytest.fixture(scope="module")
def image(engine: Any, checkout: Path, context: Path) -> Any:
    started = time.perf_counter()
    out = build_distribution(checkout, "local", TAG, context)
    TIMES["cold build (s)"] = time.perf_counter() - started
    assert out.returncode == 0, out.stdout + out.stderr[-6000:]
    assert f"llama-stack run --image-type container {TAG}" in out.stdout
    return engine.images.get(TAG)


def test_image_is_small_hardened_and_checks_its_health(image: Any) -> None:
    TIMES["image size (MB)"] = image.attrs["Size"] / 1e6
    assert image.attrs["Size"] <= SIZE_LIMIT, f"{image.attrs['Size'] / 1e6:.0f} MB"
    config = image.attrs["Config"]
    assert config["User"] == "llamastack"
    assert "/data" in (config.get("Volumes") or {})
    assert "8321/tcp" in config["ExposedPorts"]
    assert "--healthcheck" in " ".join(config["Healthcheck"]["Test"])


def test_without_keys_or_the_switch_it_refuses_to_serve_every_interface(engine: Any, image: Any) -> None:
    container = engine.containers.run(TAG, detach=True)
    try:
        result = container.wait(timeout=120)
        logs = container.logs().decode()
    finally:
        container.remove(force=True, v=True)
    assert result["StatusCode"] == 2, logs
    assert "LLAMA_STACK_API_KEYS" in logs and "LLAMA_STACK_EXPOSE_WITHOUT_AUTH" in logs


@pytest.fixture(scope="module")
def served(engine: Any, image: Any) -> Iterator[tuple[Any, str, str]]:
    key = secrets.token_urlsafe(24)
    port = free_port()
    volume = engine.volumes.create(f"llamastack-test-{secrets.token_hex(4)}")
    container = engine.containers.run(
        TAG,
        detach=True,
        init=True,
        environment={"LLAMA_STACK_API_KEYS": key},
        ports={"8321/tcp": ("127.0.0.1", port)},
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(container, base_url)
        yield container, base_url, key
    finally:
        container.remove(force=True, v=True)
        volume.remove(force=True)


def test_serves_chat_embeddings_and_an_agent_turn_that_survive_a_restart(served: Any) -> None:
    from llama_stack_client import LlamaStackClient

    container, base_url, key = served
    assert httpx.get(f"{base_url}/v1/models", timeout=10).status_code == 401  # keys are required
    client = LlamaStackClient(base_url=base_url, api_key=key)
    question = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    chat = client.inference.chat_completion(model_id=CHAT_MODEL, messages=question, sampling_params=GREEDY)
    assert "Paris" in chat.completion_message.content
    vectors = client.inference.embeddings(model_id=EMBEDDING_MODEL, contents=["hello", "world"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == 384

    agent_id = client.agents.create(
        agent_config={"model": CHAT_MODEL, "instructions": "You are helpful.", "sampling_params": GREEDY}
    ).agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="kept").session_id
    turn = client.agents.turn.create(
        agent_id=agent_id, session_id=session_id, messages=question[1:], stream=False
    )
    assert turn.output_message.content

    started = time.perf_counter()
    container.restart(timeout=20)
    wait_healthy(container, base_url)
    TIMES["restart to healthy (s)"] = time.perf_counter() - started
    session = client.agents.session.retrieve(agent_id=agent_id, session_id=session_id)
    assert [t.turn_id for t in session.turns] == [turn.turn_id]
    # The engine's own HEALTHCHECK agrees.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        container.reload()
        if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
            break
        time.sleep(1)
    assert container.attrs["State"]["Health"]["Status"] == "healthy"


def test_llama_stack_run_serves_the_image_on_loopback(engine: Any, image: Any, tmp_path: Path) -> None:
    import docker.errors

    port = free_port()
    before = {c.id for c in engine.containers.list(all=True)}
    log = (tmp_path / "run.log").open("w+b")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llamastack.cli.main",
            "run",
            "--image-type",
            "container",
            TAG,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        log.seek(0)
        assert process.poll() is None, log.read().decode(errors="replace")[-4000:]
        # Published on loopback, so it serves without keys, as `llama-stack run` does.
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
        # The command's container removes itself when stopped; its named volume stays, by design.
        for container in engine.containers.list(all=True):
            if container.id in before:
                continue
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        with contextlib.suppress(docker.errors.NotFound):
            engine.volumes.get("llamastack-local-test-data").remove(force=True)


def test_a_one_line_code_change_rebuilds_in_seconds(image: Any, checkout: Path, context: Path) -> None:
    app = checkout / "llamastack" / "stack" / "server" / "app.py"
    app.write_text(app.read_text() + "\n# rebuilt\n")
    started = time.perf_counter()
    # The same folder, as the default ~/.llamastack/builds/NAME is.
    out = build_distribution(checkout, "local", TAG, context)
    TIMES["rebuild after a one-line change (s)"] = time.perf_counter() - started
    assert out.returncode == 0, out.stderr[-6000:]
    # Every step before this package's own layer came from the cache (FROM lines start a stage).
    steps = [s for s in out.stderr.split("Step ")[1:] if " : FROM " not in s.splitlines()[0]]
    own = next(i for i, s in enumerate(steps) if "COPY app/" in s.splitlines()[0])
    assert own > 5 and all("Using cache" in s for s in steps[:own]), out.stderr[-6000:]
    assert TIMES["rebuild after a one-line change (s)"] < 120
    # The figures of this run, for the record (pytest -rP shows them).
    for name, value in TIMES.items():
        print(f"{name}: {value:.1f}")
