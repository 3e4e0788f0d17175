"""The `remote` distribution image: built from a clean checkout on the same base as `local`, run with
its port published on 127.0.0.1 and chat on llama_cpp.server running on the Docker host, driven by
the official client (a chat and an agent turn).

The engine listens on the Docker bridge's address (reachable from containers and from this host,
not from other machines); the container reaches it as host.docker.internal (host-gateway).
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import build_distribution, wait_healthy
from conftest import EMBEDDING_MODEL, ENGINE_MODEL, Engine, free_port, start_llama_cpp_engine

pytestmark = pytest.mark.docker

TAG = "llamastack-remote:test"
GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 20}
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def image(engine: Any, checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    started = time.perf_counter()
    out = build_distribution(checkout, "remote", TAG, tmp_path_factory.mktemp("context"))
    TIMES["build (s)"] = time.perf_counter() - started
    assert out.returncode == 0, out.stdout + out.stderr[-6000:]
    return engine.images.get(TAG)


def _bridge_gateway(network: dict[str, Any]) -> str:
    """The host's IPv4 address on Docker's default bridge. Some engine versions list only the subnet
    in the network's IPAM config; the bridge's gateway is then the subnet's first address."""
    for entry in network["IPAM"]["Config"] or []:
        if entry.get("Gateway") and ipaddress.ip_address(entry["Gateway"]).version == 4:
            return str(entry["Gateway"])
        subnet = ipaddress.ip_network(entry.get("Subnet", "::/128"), strict=False)
        if subnet.version == 4:
            return str(next(subnet.hosts()))
    raise AssertionError(f"Docker's bridge network has no IPv4 subnet: {network['IPAM']}")


@pytest.fixture(scope="module")
def host_engine(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """SmolLM2 behind llama_cpp.server on the bridge's gateway address, the host as containers see it."""
    gateway = _bridge_gateway(engine.networks.get("bridge").attrs)
    served = start_llama_cpp_engine(tmp_path_factory.mktemp("engine"), host=gateway)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def served(engine: Any, image: Any, host_engine: Engine) -> Iterator[tuple[str, str]]:
    key = secrets.token_urlsafe(24)
    port = free_port()
    engine_port = host_engine.url.rsplit(":", 1)[1]  # "PORT/v1"
    container = engine.containers.run(
        TAG,
        detach=True,
        init=True,
        environment={
            "LLAMA_STACK_API_KEYS": key,
            "LLAMA_CPP_SERVER_URL": f"http://host.docker.internal:{engine_port}",
            "INFERENCE_MODEL": ENGINE_MODEL,
        },
        extra_hosts={"host.docker.internal": "host-gateway"},
        ports={"8321/tcp": ("127.0.0.1", port)},
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        wait_healthy(container, base_url)
        TIMES["start to healthy (s)"] = time.perf_counter() - started
        yield base_url, key
    finally:
        container.remove(force=True, v=True)


def test_remote_image_is_hardened_and_lighter_than_local(image: Any) -> None:
    TIMES["image size (MB)"] = image.attrs["Size"] / 1e6
    config = image.attrs["Config"]
    assert config["User"] == "llamastack"
    assert "/data" in (config.get("Volumes") or {})
    assert "--healthcheck" in " ".join(config["Healthcheck"]["Test"])
    # Chat runs elsewhere: no llama.cpp and no chat weights, only the embedding model (476 MB).
    assert image.attrs["Size"] <= 500 * 10**6, f"{image.attrs['Size'] / 1e6:.0f} MB"


def test_chat_and_an_agent_turn_on_the_hosts_engine(served: tuple[str, str], host_engine: Engine) -> None:
    from llama_stack_client import LlamaStackClient

    base_url, key = served
    assert httpx.get(f"{base_url}/v1/models", timeout=10).status_code == 401  # keys are required
    client = LlamaStackClient(base_url=base_url, api_key=key)
    models = {m.identifier: m for m in client.models.list()}
    assert models[ENGINE_MODEL].provider_id == "llama-cpp-server"
    assert EMBEDDING_MODEL in models  # embeddings stay in the image

    question = [{"role": "user", "content": "What is the capital of France?"}]
    chat = client.inference.chat_completion(
        model_id=ENGINE_MODEL,
        messages=[{"role": "system", "content": "You are a helpful assistant."}, *question],
        sampling_params=GREEDY,
    )
    assert "Paris" in chat.completion_message.content

    agent_id = client.agents.create(
        agent_config={"model": ENGINE_MODEL, "instructions": "You are helpful.", "sampling_params": GREEDY}
    ).agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="remote").session_id
    turn = client.agents.turn.create(
        agent_id=agent_id, session_id=session_id, messages=question, stream=False
    )
    assert turn.output_message.content
    # Both answers came from the engine on the host, not from anything inside the image.
    chats = host_engine.log_path.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')
    assert chats >= 2
    for name, value in TIMES.items():
        print(f"{name}: {value:.1f}")
