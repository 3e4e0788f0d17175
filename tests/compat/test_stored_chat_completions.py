"""Stored chat completions: kept when made through the OpenAI route, listed and retrieved by both SDKs."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from conftest import CHAT_MODEL, start_server

pytestmark = pytest.mark.integration

_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _ask(openai_client, text: str, **extra):
    return openai_client.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": text}], max_tokens=4, temperature=0, **extra
    )


def test_completion_is_stored_with_its_input_messages(openai_client, stack_client) -> None:
    made = _ask(openai_client, "Say one word about llamas.")
    stored = openai_client.chat.completions.retrieve(made.id)
    assert stored.id == made.id
    assert stored.choices[0].message.content == made.choices[0].message.content
    # Both clients read the same record; input_messages is the request's messages.
    native = stack_client.chat.completions.retrieve(made.id)
    assert native.input_messages[0].content == "Say one word about llamas."
    assert made.id in {c.id for c in stack_client.chat.completions.list(limit=100).data}


def test_streamed_completion_with_tool_calls_is_stored_whole(openai_client, http: httpx.Client) -> None:
    stream = openai_client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[_WEATHER],
        tool_choice="required",
        stream=True,
    )
    chunks = list(stream)
    completion_id = chunks[0].id
    body = http.get(f"/v1/openai/v1/chat/completions/{completion_id}").json()
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["input_messages"][0]["content"] == "What is the weather in Paris?"


def test_store_false_keeps_nothing(openai_client, http: httpx.Client) -> None:
    made = _ask(openai_client, "Not kept.", store=False)
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.retrieve(made.id)
    assert made.id not in {
        c["id"] for c in http.get("/v1/openai/v1/chat/completions?limit=100").json()["data"]
    }


def test_list_pages_orders_and_filters(openai_client, http: httpx.Client) -> None:
    made = [_ask(openai_client, f"Word number {i}.").id for i in range(3)]
    newest_first = http.get("/v1/openai/v1/chat/completions", params={"limit": 2}).json()
    assert newest_first["object"] == "list"
    assert len(newest_first["data"]) == 2 and newest_first["has_more"] is True
    assert newest_first["first_id"] == newest_first["data"][0]["id"]
    assert newest_first["last_id"] == newest_first["data"][-1]["id"]
    rest = http.get(
        "/v1/openai/v1/chat/completions", params={"limit": 100, "after": newest_first["last_id"]}
    ).json()
    seen = [c["id"] for c in newest_first["data"]] + [c["id"] for c in rest["data"]]
    assert len(seen) == len(set(seen)) and set(made) <= set(seen)
    oldest_first = http.get("/v1/openai/v1/chat/completions", params={"limit": 100, "order": "asc"}).json()
    created = [c["created"] for c in oldest_first["data"]]
    assert created == sorted(created)
    assert http.get("/v1/openai/v1/chat/completions", params={"model": "nope"}).json()["data"] == []
    assert http.get("/v1/openai/v1/chat/completions/nope").status_code == 404
    assert http.get("/v1/openai/v1/chat/completions", params={"limit": 0}).status_code == 400


def test_stored_completions_survive_a_restart_and_can_be_switched_off(tmp_path: Path) -> None:
    state = tmp_path / "state"
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    server = start_server(state)
    try:
        completion_id = httpx.post(
            f"{server.base_url}/v1/openai/v1/chat/completions", json=body, timeout=60
        ).json()["id"]
    finally:
        server.stop()
    server = start_server(state, env={"LLAMA_STACK_STORE_CHAT_COMPLETIONS": "false"})
    try:
        r = httpx.get(f"{server.base_url}/v1/openai/v1/chat/completions/{completion_id}")
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]
        other = httpx.post(f"{server.base_url}/v1/openai/v1/chat/completions", json=body, timeout=60).json()[
            "id"
        ]
        assert httpx.get(f"{server.base_url}/v1/openai/v1/chat/completions/{other}").status_code == 404
    finally:
        server.stop()
