"""Model discovery's registry rules, in-process over ASGI with a real stack whose remote provider
asks a small OpenAI-style engine on loopback (its GET /v1/models answer is set by each test): who
may refresh and remove discovered models, what a registration of a discovered id does, ids taken
elsewhere, and two replicas on one database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from json_engine import JSONHandler, LoopbackServer

from llamastack.stack.config import parse_run_config
from llamastack.stack.resolver import Stack, build_stack
from llamastack.stack.server.app import create_app

# The stacks are built in the fixtures' (session) loop, and the engine connections belong to it.
pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY, ADMIN = "key-one-1111", "admin-key-0000"


class ListingEngine(LoopbackServer):
    """Answers GET /v1/models with `served` (ids, or listing entries), POST /v1/embeddings for the
    models in `embedders` (id -> dimension) and 400 for others, counting them in `embedding_requests`;
    every other request with 404."""

    def __init__(self) -> None:
        self.served: list[str | dict[str, Any]] = ["alpha", "beta"]
        self.embedders: dict[str, int] = {}
        self.embedding_requests: list[str] = []
        engine = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    data = [m if isinstance(m, dict) else {"id": m} for m in engine.served]
                    self._json(200, {"object": "list", "data": [{"object": "model", **m} for m in data]})
                else:
                    self._json(404, {"error": {"message": "no such route"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.path.endswith("/embeddings"):
                    self._json(404, {"error": {"message": "no such route"}})
                    return
                engine.embedding_requests.append(body["model"])
                dimension = engine.embedders.get(body["model"])
                if dimension is None:
                    self._json(400, {"error": {"message": "this model does not embed"}})
                    return
                data = [
                    {"object": "embedding", "index": i, "embedding": [0.5] * dimension}
                    for i in range(len(body["input"]))
                ]
                self._json(200, {"object": "list", "data": data, "usage": {"prompt_tokens": 2}})

        super().__init__(Handler)


@pytest.fixture()
def engine() -> Iterator[ListingEngine]:
    listing = ListingEngine()
    yield listing
    listing.close()


def _config(state: Path, engine_url: str, *, auth: bool, **discovery: Any) -> dict[str, Any]:
    return {
        "image_name": "discovery-unit",
        "state_dir": str(state),
        "providers": {
            "inference": [
                {
                    "provider_id": "eng",
                    "provider_type": "remote::openai-compatible",
                    "config": {
                        "url": engine_url,
                        "refresh_models": True,
                        "refresh_interval_s": 3600,
                        **discovery,
                    },
                },
                {
                    "provider_id": "other",
                    "provider_type": "remote::openai-compatible",
                    "config": {"url": engine_url},
                },
            ],
        },
        "models": [{"model_id": "beta", "provider_id": "other", "provider_model_id": "beta"}],
        "server": {"auth": {"api_keys": [KEY], "admin_keys": [ADMIN]}} if auth else {},
    }


@pytest.fixture()
async def stack(tmp_path: Path, engine: ListingEngine) -> AsyncIterator[Stack]:
    built = await build_stack(parse_run_config(_config(tmp_path, engine.url, auth=True), {}))
    yield built
    await built.shutdown()


def _client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(stack)), base_url="http://127.0.0.1"
    )


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _ids(client: httpx.AsyncClient, key: str = ADMIN) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/models", headers=_as(key))
    assert response.status_code == 200, response.text
    return {m["identifier"]: m for m in response.json()["data"]}


async def test_discovered_at_start_under_the_engine_ids_and_shared_by_every_key(stack: Stack) -> None:
    async with _client(stack) as client:
        models = await _ids(client, KEY)
        # "beta" is taken by the run config's model (of another provider): eng's beta is eng/beta.
        assert models["alpha"]["provider_id"] == "eng" and models["alpha"]["metadata"] == {"discovered": True}
        assert models["eng/beta"]["provider_resource_id"] == "beta"
        assert models["beta"]["provider_id"] == "other" and "discovered" not in models["beta"]["metadata"]


async def test_only_an_admin_refreshes_and_removes_discovered_models(
    stack: Stack, engine: ListingEngine
) -> None:
    async with _client(stack) as client:
        refused = await client.post("/v1/models:refresh", json={}, headers=_as(KEY))
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
        assert (await client.delete("/v1/models/alpha", headers=_as(KEY))).status_code == 403
        taken = await client.post(
            "/v1/models", json={"model_id": "alpha", "provider_id": "eng"}, headers=_as(KEY)
        )
        assert taken.status_code == 409, taken.text

        engine.served = ["alpha", "gamma"]
        response = await client.post("/v1/models:refresh", json={"provider_id": "eng"}, headers=_as(ADMIN))
        assert response.status_code == 200, response.text
        [result] = response.json()["data"]
        assert result == {
            "provider_id": "eng",
            "status": "OK",
            "message": None,
            "served": ["alpha", "gamma"],
            "added": ["gamma"],
            "removed": ["eng/beta"],
            "unchanged": ["alpha"],
        }
        # Every listing provider when none is named: `other` lists alpha and gamma too, whose ids
        # are taken, so they come under its own prefix (beta stays: the run config's).
        everything = (await client.post("/v1/models:refresh", headers=_as(ADMIN))).json()["data"]
        assert {r["provider_id"]: r["added"] for r in everything} == {
            "eng": [],
            "other": ["other/alpha", "other/gamma"],
        }
        assert (await client.delete("/v1/models/gamma", headers=_as(ADMIN))).status_code == 200
        assert "gamma" not in await _ids(client)


async def test_a_registration_takes_over_a_discovered_id_and_is_kept(
    stack: Stack, engine: ListingEngine
) -> None:
    async with _client(stack) as client:
        registered = await client.post(
            "/v1/models",
            json={"model_id": "alpha", "provider_id": "eng", "metadata": {"mine": True}},
            headers=_as(ADMIN),
        )
        assert registered.status_code == 200, registered.text
        engine.served = ["beta"]  # the engine dropped alpha: a registered model is not removed
        [result] = (
            await client.post("/v1/models:refresh", json={"provider_id": "eng"}, headers=_as(ADMIN))
        ).json()["data"]
        assert result["removed"] == [] and result["unchanged"] == ["eng/beta"]
        assert (await _ids(client))["alpha"]["metadata"] == {"mine": True}
        # Its requests now say the engine does not serve it, naming the provider and the URL.
        chat = await client.post(
            "/v1/openai/v1/chat/completions",
            json={"model": "alpha", "messages": [{"role": "user", "content": "hi"}]},
            headers=_as(ADMIN),
        )
        assert chat.status_code == 404, chat.text
        detail = chat.json()["detail"]
        assert "remote::openai-compatible" in detail and engine.url in detail and "'alpha'" in detail


async def test_a_refresh_of_a_provider_that_cannot_list_is_a_400(tmp_path: Path) -> None:
    config = {
        "image_name": "discovery-unit",
        "state_dir": str(tmp_path),
        "providers": {"inference": [{"provider_id": "st", "provider_type": "inline::sentence-transformers"}]},
    }
    built = await build_stack(parse_run_config(config, {}))
    try:
        async with _client(built) as client:
            response = await client.post("/v1/models:refresh", json={"provider_id": "st"})
            assert response.status_code == 400 and "POST /v1/models" in response.json()["detail"]
            assert (await client.post("/v1/models:refresh")).json() == {"data": []}
    finally:
        await built.shutdown()


async def test_a_replica_registration_replaces_a_discovered_model(
    tmp_path: Path, engine: ListingEngine
) -> None:
    config = parse_run_config(_config(tmp_path, engine.url, auth=False), {})
    first, second = await build_stack(config), await build_stack(config)
    try:
        async with _client(first) as a, _client(second) as b:
            assert (await _ids(a))["alpha"]["metadata"] == {"discovered": True}
            registered = await b.post("/v1/models", json={"model_id": "alpha", "provider_id": "other"})
            assert registered.status_code == 200, registered.text
            assert (await _ids(a))["alpha"]["provider_id"] == "other"  # A syncs before the request
            # A's discovered eng/beta is not dropped by the sync (it was never stored).
            assert "eng/beta" in await _ids(a)
    finally:
        await first.shutdown()
        await second.shutdown()


async def test_discovery_registers_the_allowed_models_and_tells_embedding_models_by_asking(
    tmp_path: Path, engine: ListingEngine
) -> None:
    engine.served = [
        "alpha",
        "text-embedding-3-small",  # its id names an embedding model, and it answers as one
        "nomic-embed-text",  # so does this id, but the engine refuses to embed with it: an llm
        {"id": "m2-bert", "type": "embedding", "context_length": 8192},  # the listing says so
        {"id": "flux", "type": "image"},  # neither chat nor embeddings: left out
        "custom-vectors",  # named in embedding_models
        "not-allowed",
        "beta",  # the run config's model of the other provider
    ]
    engine.embedders = {"text-embedding-3-small": 8, "m2-bert": 4, "custom-vectors": 3}
    allowed = ["alpha", "*embed*", "m2-*", "flux", "custom-*"]
    config = _config(tmp_path, engine.url, auth=False, allowed_models=allowed, embedding_models=["custom-*"])
    built = await build_stack(parse_run_config(config, {}))
    try:
        async with _client(built) as client:
            models = {i: m for i, m in (await _ids(client)).items() if m["provider_id"] == "eng"}
            kinds = {
                i: (m["model_type"], m["metadata"].get("embedding_dimension")) for i, m in models.items()
            }
            assert kinds == {
                "alpha": ("llm", None),
                "text-embedding-3-small": ("embedding", 8),
                "nomic-embed-text": ("llm", None),
                "m2-bert": ("embedding", 4),
                "custom-vectors": ("embedding", 3),
            }
            assert models["m2-bert"]["metadata"]["context_length"] == 8192
            asked = sorted(engine.embedding_requests)
            assert asked == ["custom-vectors", "m2-bert", "nomic-embed-text", "text-embedding-3-small"]

            # A discovered embedding model serves embeddings; a refresh does not ask the engine again.
            embedded = await client.post(
                "/v1/inference/embeddings", json={"model_id": "m2-bert", "contents": ["one", "two"]}
            )
            assert embedded.status_code == 200, embedded.text
            assert [len(v) for v in embedded.json()["embeddings"]] == [4, 4]
            [result] = (await client.post("/v1/models:refresh", json={"provider_id": "eng"})).json()["data"]
            assert result["served"] == sorted(kinds) and result["added"] == result["removed"] == []
            assert sorted(engine.embedding_requests) == sorted([*asked, "m2-bert"])
    finally:
        await built.shutdown()
