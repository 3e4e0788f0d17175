"""OpenAI Responses API through the openai SDK, on the real server and SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import CHAT_MODEL, start_server

pytestmark = pytest.mark.integration

_WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _create(client: OpenAI, prompt: str, **extra):
    return client.responses.create(
        model=CHAT_MODEL,
        input=prompt,
        temperature=0,
        max_output_tokens=extra.pop("max_output_tokens", 8),
        **extra,
    )


def test_plain_response_is_stored_and_retrieved(openai_client) -> None:
    made = _create(openai_client, "Say hello.", instructions="Answer in one word.")
    assert made.object == "response" and made.id.startswith("resp_")
    assert made.status in ("completed", "incomplete")
    message = made.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert made.output_text == message.content[0].text and made.output_text
    assert made.usage.input_tokens > 0 and made.usage.output_tokens > 0
    stored = openai_client.responses.retrieve(made.id)
    assert stored.id == made.id and stored.output_text == made.output_text
    items = openai_client.responses.input_items.list(made.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Say hello."


def test_chained_response_sees_the_chain(openai_client, http: httpx.Client) -> None:
    first = _create(openai_client, "My name is Ada.")
    second = _create(openai_client, "What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    items = openai_client.responses.input_items.list(second.id, order="asc").data
    # The chain: the first input, its answer, then the new input.
    assert [(i.type, i.role) for i in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items[0].content[0].text == "My name is Ada."
    assert items[1].content[0].text == first.output_text
    assert items[2].content[0].text == "What is my name?"
    newest_first = http.get(f"/v1/openai/v1/responses/{second.id}/input_items").json()["data"]
    assert [i["id"] for i in newest_first] == [i.id for i in reversed(items)]
    page = http.get(
        f"/v1/openai/v1/responses/{second.id}/input_items", params={"limit": 1, "order": "asc"}
    ).json()
    assert page["has_more"] is True and page["data"][0]["id"] == items[0].id
    after = http.get(
        f"/v1/openai/v1/responses/{second.id}/input_items", params={"after": items[0].id, "order": "asc"}
    ).json()
    assert [i["id"] for i in after["data"]] == [items[1].id, items[2].id]


def test_json_schema_output_is_valid_json_matching_the_schema(openai_client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    made = _create(
        openai_client,
        "Name a city and its population.",
        max_output_tokens=60,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    assert made.status == "completed"
    value = json.loads(made.output_text)
    assert set(value) == {"city", "population"}
    assert isinstance(value["city"], str) and isinstance(value["population"], int)
    assert made.text.format.type == "json_schema"
    obj = _create(
        openai_client,
        'Reply with the JSON object {"ok": true}.',
        max_output_tokens=300,
        text={"format": {"type": "json_object"}},
    )
    assert obj.status == "completed" and isinstance(json.loads(obj.output_text), dict)


def test_stream_events_in_openai_order(openai_client) -> None:
    events = list(
        openai_client.responses.create(
            model=CHAT_MODEL, input="Count to three.", temperature=0, max_output_tokens=30, stream=True
        )
    )
    kinds = [e.type for e in events]
    deltas = [k for k in kinds if k == "response.output_text.delta"]
    assert len(deltas) > 1
    compact = [k for i, k in enumerate(kinds) if k != "response.output_text.delta" or kinds[i - 1] != k]
    terminal = kinds[-1]
    assert terminal in ("response.completed", "response.incomplete")
    assert compact == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        terminal,
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert final.output_text == text and events[-3].part.text == text
    assert {e.response.id for e in events if hasattr(e, "response")} == {final.id}
    # The streamed response is stored whole.
    assert openai_client.responses.retrieve(final.id).output_text == text


def test_stream_helper_gets_the_final_response(openai_client) -> None:
    with openai_client.responses.stream(
        model=CHAT_MODEL, input="Say hi.", temperature=0, max_output_tokens=200
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == text


def test_store_false_keeps_nothing(openai_client, http: httpx.Client) -> None:
    made = _create(openai_client, "Not kept.", store=False)
    assert made.output_text
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        _create(openai_client, "Continue.", previous_response_id=made.id)
    listed = http.get("/v1/openai/v1/responses", params={"limit": 100}).json()["data"]
    assert made.id not in {r["id"] for r in listed}


def test_list_pages_orders_filters_and_delete(openai_client, http: httpx.Client) -> None:
    made = [_create(openai_client, f"Word number {i}.", max_output_tokens=2).id for i in range(3)]
    first = http.get("/v1/openai/v1/responses", params={"limit": 2}).json()
    assert first["object"] == "list" and len(first["data"]) == 2 and first["has_more"] is True
    assert first["data"][0]["id"] == made[-1]  # newest first
    assert first["data"][0]["input"][0]["content"][0]["text"] == "Word number 2."
    rest = http.get("/v1/openai/v1/responses", params={"limit": 100, "after": first["last_id"]}).json()
    seen = [r["id"] for r in first["data"] + rest["data"]]
    assert len(seen) == len(set(seen)) and set(made) <= set(seen)
    oldest = http.get("/v1/openai/v1/responses", params={"limit": 100, "order": "asc"}).json()["data"]
    assert [r["created_at"] for r in oldest] == sorted(r["created_at"] for r in oldest)
    assert http.get("/v1/openai/v1/responses", params={"model": "other"}).json()["data"] == []
    deleted = openai_client.responses.delete(made[0])
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(made[0])
    assert http.delete(f"/v1/openai/v1/responses/{made[0]}").status_code == 404


def test_forced_function_call_and_its_output(openai_client) -> None:
    called = openai_client.responses.create(
        model=CHAT_MODEL,
        input="What is the weather in Paris?",
        tools=[_WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
    )
    calls = [o for o in called.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert "city" in json.loads(calls[0].arguments)
    answer = openai_client.responses.create(
        model=CHAT_MODEL,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C."}],
        previous_response_id=called.id,
        tools=[_WEATHER],
        temperature=0,
        max_output_tokens=20,
    )
    assert answer.output[0].type == "message" and answer.output_text
    kinds = [i.type for i in openai_client.responses.input_items.list(answer.id, order="asc").data]
    assert kinds == ["message", "function_call", "function_call_output"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "no-such-model", "input": "hi"}, 404, "no-such-model"),
        ({"model": CHAT_MODEL, "input": "hi", "previous_response_id": "resp_missing"}, 404, "resp_missing"),
        ({"model": CHAT_MODEL, "input": "hi", "text": {"format": {"type": "xml"}}}, 400, "text.format"),
        (
            {"model": CHAT_MODEL, "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
            400,
            "schema",
        ),
        ({"model": CHAT_MODEL, "input": []}, 400, "input"),
        (
            {"model": CHAT_MODEL, "input": "hi", "tools": [{"type": "code_interpreter"}]},
            400,
            "code_interpreter",
        ),
        ({"model": CHAT_MODEL, "input": "hi", "tool_choice": "required"}, 400, "tool_choice"),
        ({"model": CHAT_MODEL, "input": "hi", "stream": True, "previous_response_id": "x"}, 404, "'x'"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(http: httpx.Client, body, status, needle) -> None:
    response = http.post("/v1/openai/v1/responses", json=body)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


def test_bad_list_queries(http: httpx.Client) -> None:
    assert http.get("/v1/openai/v1/responses", params={"limit": 0}).status_code == 400
    assert http.get("/v1/openai/v1/responses", params={"after": "resp_nope"}).status_code == 400
    assert http.get("/v1/openai/v1/responses/resp_nope/input_items").status_code == 404


def test_responses_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    try:
        client = OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key="x", max_retries=0, timeout=120)
        made = _create(client, "Remember llamas.")
    finally:
        server.stop()
    server = start_server(state)
    try:
        client = OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key="x", max_retries=0, timeout=120)
        kept = client.responses.retrieve(made.id)
        assert kept.output_text == made.output_text
        assert client.responses.input_items.list(made.id).data[0].content[0].text == "Remember llamas."
        follow = _create(client, "And now?", previous_response_id=made.id)
        assert len(client.responses.input_items.list(follow.id).data) == 3
    finally:
        server.stop()


def test_responses_belong_to_the_key_that_made_them(tmp_path: Path) -> None:
    env = {"LLAMA_STACK_API_KEYS": "rk-one-51c2,rk-two-7d9e", "LLAMA_STACK_ADMIN_API_KEY": "rk-admin-0a3f"}
    server = start_server(tmp_path / "state", env=env)

    def client(key: str) -> OpenAI:
        return OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key=key, max_retries=0, timeout=120)

    try:
        one, two, admin = client("rk-one-51c2"), client("rk-two-7d9e"), client("rk-admin-0a3f")
        made = _create(one, "Mine.")
        assert one.responses.retrieve(made.id).id == made.id
        for attempt in (
            lambda: two.responses.retrieve(made.id),
            lambda: two.responses.input_items.list(made.id),
            lambda: two.responses.delete(made.id),
            lambda: _create(two, "Continue.", previous_response_id=made.id),
        ):
            with pytest.raises(openai.NotFoundError):
                attempt()

        def listed(key: str) -> set[str]:
            page = httpx.get(
                f"{server.base_url}/v1/openai/v1/responses",
                params={"limit": 100},
                headers={"Authorization": f"Bearer {key}"},
            )
            return {r["id"] for r in page.json()["data"]}

        assert made.id not in listed("rk-two-7d9e")
        assert made.id in listed("rk-one-51c2") and made.id in listed("rk-admin-0a3f")
        assert admin.responses.retrieve(made.id).id == made.id
    finally:
        server.stop()


def test_streamed_function_call_events(openai_client) -> None:
    events = list(
        openai_client.responses.create(
            model=CHAT_MODEL,
            input="What is the weather in Rome?",
            tools=[_WEATHER],
            tool_choice="required",
            temperature=0,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[-1] == "response.completed"
    start = kinds.index("response.output_item.added")
    assert kinds[start : start + 4] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    call = events[start + 3].item
    assert call.type == "function_call" and call.name == "get_weather"
    assert events[start + 2].arguments == call.arguments and "city" in json.loads(call.arguments)
    final = events[-1].response
    assert [o.type for o in final.output] == ["function_call"]
    assert openai_client.responses.retrieve(final.id).output[0].call_id == call.call_id
