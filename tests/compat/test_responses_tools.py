"""Responses with server-side tools (file_search over our vector stores, mcp on a real MCP server on
loopback, web_search), guardrails and the extra request fields, through the openai SDK against the
real server and SmolLM2. Tool calls are forced by grammar (tool_choice named), so they are
deterministic; max_infer_iters=2 lets the model answer once after the tool ran."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import httpx
import openai
import pytest
from json_engine import JSONHandler, LoopbackServer
from openai import OpenAI

from conftest import CHAT_MODEL, SMOLLM2_GGUF, start_server

pytestmark = pytest.mark.integration

HANDBOOK = "Employee handbook.\n\nHolidays: every employee has twenty-five days of paid holiday per year.\n"
RECIPES = "Soup recipes.\n\nTomato soup: roast tomatoes with garlic, then blend with vegetable stock.\n"
OLD_RECIPES = "Old soup recipes.\n\nPea soup: simmer split peas with ham for two hours.\n"
INSECURE = "Run this:\n```python\nimport subprocess\nsubprocess.call('ls ' + user_dir, shell=True)\n```"
SCANNER_MESSAGE = "Sorry, I found security concerns in the code."
FOOD_SINCE_2024 = {
    "type": "and",
    "filters": [
        {"type": "eq", "key": "kind", "value": "food"},
        {"type": "or", "filters": [{"type": "gte", "key": "year", "value": 2024}]},
    ],
}


def _upload(client, name: str, text: str) -> str:
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="assistants").id


@pytest.fixture(scope="module")
def files_store(openai_client):
    """A vector store of three files with attributes: a policy, new recipes and old recipes."""
    vs = openai_client.vector_stores.create(name="responses-tools")
    ids = {}
    for name, text, attributes in (
        ("handbook.txt", HANDBOOK, {"kind": "policy", "year": 2023}),
        ("recipes.txt", RECIPES, {"kind": "food", "year": 2024}),
        ("old-recipes.txt", OLD_RECIPES, {"kind": "food", "year": 2019}),
    ):
        ids[name] = _upload(openai_client, name, text)
        done = openai_client.vector_stores.files.create(
            vector_store_id=vs.id, file_id=ids[name], attributes=attributes
        )
        assert done.status == "completed"
    yield vs.id, ids
    openai_client.vector_stores.delete(vs.id)


def _file_search(vs_id: str, **extra) -> dict:
    return {"type": "file_search", "vector_store_ids": [vs_id], **extra}


def _mcp(url: str, **extra) -> dict:
    return {"type": "mcp", "server_label": "fixture", "server_url": url, "require_approval": "never", **extra}


def test_file_search_with_compound_filters_and_results(openai_client, files_store) -> None:
    vs_id, ids = files_store
    made = openai_client.responses.create(
        model=CHAT_MODEL,
        input="Search my files for soup recipes.",
        tools=[_file_search(vs_id, filters=FOOD_SINCE_2024, max_num_results=3)],
        tool_choice={"type": "file_search"},
        include=["file_search_call.results"],
        extra_body={"max_infer_iters": 2},
        temperature=0,
        max_output_tokens=32,
    )
    kinds = [o.type for o in made.output]
    assert kinds == ["file_search_call", "message"], kinds
    call = made.output[0]
    assert call.status == "completed" and call.queries and call.queries[0].strip()
    # Only the file both filters let through: food, from 2024 on.
    assert call.results and {r.file_id for r in call.results} == {ids["recipes.txt"]}
    assert "Tomato soup" in call.results[0].text and call.results[0].attributes["kind"] == "food"
    assert made.output_text
    stored = openai_client.responses.retrieve(made.id)
    assert stored.output[0].results[0].file_id == ids["recipes.txt"]
    # The chain carries the search: a follow-up sees it in its input items.
    follow = openai_client.responses.create(
        model=CHAT_MODEL, input="Thanks.", previous_response_id=made.id, temperature=0, max_output_tokens=4
    )
    items = openai_client.responses.input_items.list(follow.id, order="asc").data
    assert [i.type for i in items] == ["message", "file_search_call", "message", "message"]


def test_file_search_results_only_when_included(openai_client, files_store) -> None:
    vs_id, _ = files_store
    made = openai_client.responses.create(
        model=CHAT_MODEL,
        input="How many holiday days do employees get?",
        tools=[_file_search(vs_id, max_num_results=1, ranking_options={"score_threshold": 0.0})],
        tool_choice="required",
        extra_body={"max_infer_iters": 1},
        temperature=0,
    )
    assert [o.type for o in made.output] == ["file_search_call"]
    assert made.output[0].status == "completed" and made.output[0].results is None


def test_file_search_streamed_events_in_openai_order(openai_client, files_store) -> None:
    vs_id, _ = files_store
    events = list(
        openai_client.responses.create(
            model=CHAT_MODEL,
            input="Search my files for soup.",
            tools=[_file_search(vs_id)],
            tool_choice={"type": "file_search"},
            extra_body={"max_infer_iters": 2},
            temperature=0,
            max_output_tokens=32,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    compact = [k for i, k in enumerate(kinds) if k != "response.output_text.delta" or kinds[i - 1] != k]
    assert compact[:7] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    assert compact[7:11] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    search_id = events[2].item.id
    assert {e.item_id for e in events[3:6]} == {search_id} and events[6].item.status == "completed"
    final = events[-1].response
    assert [o.type for o in final.output] == ["file_search_call", "message"]
    assert final.output[1].id != search_id and final.output[1].id == events[7].item.id


def test_mcp_tool_from_a_real_server(openai_client, mcp_url: str) -> None:
    made = openai_client.responses.create(
        model=CHAT_MODEL,
        input="Echo the word llama.",
        tools=[_mcp(mcp_url, allowed_tools=["add", "echo"])],
        tool_choice={"type": "mcp", "server_label": "fixture", "name": "echo"},
        extra_body={"max_infer_iters": 2},
        temperature=0,
        max_output_tokens=32,
    )
    kinds = [o.type for o in made.output]
    assert kinds == ["mcp_list_tools", "mcp_call", "message"], kinds
    listing, call = made.output[0], made.output[1]
    assert listing.server_label == "fixture" and {t.name for t in listing.tools} == {"add", "echo"}
    echo = next(t for t in listing.tools if t.name == "echo")
    assert echo.input_schema["properties"]["text"]["type"] == "string"
    assert call.name == "echo" and call.server_label == "fixture" and call.error is None
    args = json.loads(call.arguments)
    assert call.output == args["text"] * int(args.get("times", 1))
    assert openai_client.responses.retrieve(made.id).output[1].output == call.output


def test_mcp_streamed_events_and_a_failing_tool(openai_client, mcp_url: str) -> None:
    events = list(
        openai_client.responses.create(
            model=CHAT_MODEL,
            input="Call the fail tool.",
            tools=[_mcp(mcp_url, allowed_tools={"tool_names": ["fail"]})],
            tool_choice={"type": "mcp", "server_label": "fixture"},
            extra_body={"max_infer_iters": 1},
            temperature=0,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.failed",
        "response.output_item.done",
        "response.completed",
    ]
    call = events[-2].item
    assert call.type == "mcp_call" and call.name == "fail" and "always fails" in call.error
    assert [o.type for o in events[-1].response.output] == ["mcp_list_tools", "mcp_call"]


def test_mcp_approval_request_then_approved_and_denied(openai_client, mcp_url: str) -> None:
    tools = [_mcp(mcp_url, allowed_tools=["echo"], require_approval={"never": {"tool_names": ["add"]}})]
    forced = {"type": "mcp", "server_label": "fixture", "name": "echo"}
    asked = openai_client.responses.create(
        model=CHAT_MODEL,
        input="Echo the word llama.",
        tools=tools,
        tool_choice=forced,
        temperature=0,
    )
    assert [o.type for o in asked.output] == ["mcp_list_tools", "mcp_approval_request"]
    request = asked.output[1]
    assert (
        request.name == "echo"
        and request.server_label == "fixture"
        and "text" in json.loads(request.arguments)
    )
    approved = openai_client.responses.create(
        model=CHAT_MODEL,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
        previous_response_id=asked.id,
        tools=tools,
        extra_body={"max_infer_iters": 1},
        temperature=0,
        max_output_tokens=20,
    )
    kinds = [o.type for o in approved.output]
    assert kinds[:2] == ["mcp_list_tools", "mcp_call"], kinds
    args = json.loads(request.arguments)
    assert approved.output[1].output == args["text"] * int(args.get("times", 1))
    denied = openai_client.responses.create(
        model=CHAT_MODEL,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False}],
        previous_response_id=asked.id,
        tools=tools,
        tool_choice="none",
        temperature=0,
        max_output_tokens=8,
    )
    assert [o.type for o in denied.output] == ["mcp_list_tools", "message"]
    with pytest.raises(openai.BadRequestError, match="approval_request_id"):
        openai_client.responses.create(
            model=CHAT_MODEL,
            input=[{"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True}],
            previous_response_id=asked.id,
            tools=tools,
        )


def test_guardrails_end_the_response_with_the_shield_message(openai_client) -> None:
    made = openai_client.responses.create(
        model=CHAT_MODEL, input=INSECURE, extra_body={"guardrails": ["code-scanner"]}, max_output_tokens=8
    )
    assert made.status == "completed" and made.output_text == SCANNER_MESSAGE
    assert made.usage is None  # the model never ran
    events = list(
        openai_client.responses.create(
            model=CHAT_MODEL,
            input=INSECURE,
            extra_body={"guardrails": ["code-scanner"]},
            max_output_tokens=8,
            stream=True,
        )
    )
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == SCANNER_MESSAGE and events[-1].type == "response.completed"
    # Harmless input passes the shield and reaches the model.
    fine = openai_client.responses.create(
        model=CHAT_MODEL,
        input="Say hi.",
        extra_body={"guardrails": ["code-scanner"]},
        temperature=0,
        max_output_tokens=8,
    )
    assert fine.output_text and fine.output_text != SCANNER_MESSAGE and fine.usage.output_tokens > 0


def test_metadata_user_truncation_and_parallel_tool_calls_are_kept(openai_client) -> None:
    made = openai_client.responses.create(
        model=CHAT_MODEL,
        input="Say hi.",
        metadata={"ticket": "T-1"},
        user="user-42",
        truncation="auto",
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=4,
    )
    stored = openai_client.responses.retrieve(made.id)
    for response in (made, stored):
        assert response.metadata == {"ticket": "T-1"} and response.user == "user-42"
        assert response.truncation == "auto" and response.parallel_tool_calls is False
        assert response.max_output_tokens == 4


@pytest.mark.parametrize("tool_choice", [{"type": "web_search"}, "auto"], ids=["forced", "auto"])
def test_web_search_without_a_key_is_a_400(http: httpx.Client, tool_choice: object) -> None:
    # Refused before the model runs, whether or not it would call the tool; streamed, it is still an
    # HTTP status.
    response = http.post(
        "/v1/openai/v1/responses",
        json={
            "model": CHAT_MODEL,
            "input": "Search the web for llamas.",
            "tools": [{"type": "web_search"}],
            "tool_choice": tool_choice,
            "stream": True,
        },
    )
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "API key" in detail and "brave_search_api_key" in detail


def test_truncation_auto_drops_the_oldest_input(http: httpx.Client) -> None:
    long = "word " * 5000  # beyond the 4096-token context
    body = {
        "model": CHAT_MODEL,
        "input": [
            {"role": "user", "content": long},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "Say hi."},
        ],
        "max_output_tokens": 4,
        "temperature": 0,
    }
    refused = http.post("/v1/openai/v1/responses", json=body)
    assert refused.status_code == 400 and "context length" in refused.json()["detail"]
    kept = http.post("/v1/openai/v1/responses", json={**body, "truncation": "auto"})
    assert kept.status_code == 200, kept.text
    assert kept.json()["truncation"] == "auto" and kept.json()["usage"]["input_tokens"] < 4096


@pytest.mark.parametrize(
    ("tools", "extra", "status", "needle"),
    [
        ([{"type": "file_search"}], {}, 400, "vector_store_ids"),
        ([{"type": "file_search", "vector_store_ids": ["vs_missing"]}], {}, 404, "vs_missing"),
        ("store", {"filters": {"type": "near", "key": "x"}}, 400, "filters"),
        ("store", {"max_num_results": 0}, 400, "max_num_results"),
        ("store", {"ranking_options": {"ranker": "best"}}, 400, "ranker"),
        ("mcp", {"require_approval": "sometimes"}, 400, "require_approval"),
        ("mcp", {"require_approval": {"always": {"tool_names": "echo"}}}, 400, "require_approval.always"),
        ("mcp", {"headers": {"X-Count": 3}}, 400, "headers"),
        ("mcp", {"server_url": "http://127.0.0.1:9/mcp"}, 400, "127.0.0.1:9"),
        ("mcp", {"server_url": "ftp://example.com"}, 400, "server_url"),
        ("mcp", {"tool_choice": {"type": "mcp", "server_label": "other"}}, 400, "other"),
        ("mcp", {"tool_choice": {"type": "mcp", "server_label": "fixture", "name": "nope"}}, 400, "nope"),
        ([{"type": "code_interpreter"}], {}, 400, "code_interpreter"),
        ([], {"tool_choice": {"type": "file_search"}}, 400, "tool_choice"),
        ([], {"include": ["reasoning.encrypted_content"]}, 400, "include"),
        ([], {"metadata": {f"k{i}": "v" for i in range(17)}}, 400, "metadata"),
        ([], {"truncation": "sometimes"}, 400, "truncation"),
        ([], {"guardrails": ["no-such-shield"]}, 404, "no-such-shield"),
    ],
)
def test_bad_tool_input_is_a_4xx_naming_the_problem(
    http: httpx.Client, files_store, mcp_url: str, tools, extra, status, needle
) -> None:
    extra = dict(extra)
    top_level = ("tool_choice", "include", "metadata", "truncation", "guardrails")
    top = {k: extra.pop(k) for k in top_level if k in extra}
    if tools == "store":
        tools = [_file_search(files_store[0], **extra)]
    elif tools == "mcp":
        tools = [_mcp(mcp_url, **extra)]
    body = {"model": CHAT_MODEL, "input": "hi", "max_output_tokens": 2, **top}
    if tools:
        body["tools"] = tools
    response = http.post("/v1/openai/v1/responses", json=body)
    assert response.status_code == status, response.text
    assert needle in str(response.json()["detail"])


def test_mcp_headers_never_come_back(openai_client, http: httpx.Client, mcp_url) -> None:
    secret = "sk-never-shown-5e1f"
    made = openai_client.responses.create(
        model=CHAT_MODEL,
        input="Echo the word llama.",
        tools=[_mcp(mcp_url, headers={"X-Api-Key": secret}, allowed_tools=["echo"])],
        tool_choice={"type": "mcp", "server_label": "fixture", "name": "echo"},
        extra_body={"max_infer_iters": 1},
        temperature=0,
    )
    assert [o.type for o in made.output] == ["mcp_list_tools", "mcp_call"]
    assert made.output[1].error is None
    for page in (
        http.get(f"/v1/openai/v1/responses/{made.id}").text,
        http.get("/v1/openai/v1/responses", params={"limit": 5}).text,
        http.get(f"/v1/openai/v1/responses/{made.id}/input_items").text,
    ):
        assert secret not in page


class _FakeBrave(LoopbackServer):
    """A Brave-Search-shaped API on loopback: every GET gets the same two results; requests are kept."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        fake = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                fake.seen.append((self.path, self.headers.get("X-Subscription-Token")))
                results = [
                    {"title": "Llama", "url": "https://example.org/l", "description": "A camelid."},
                    {"title": "Alpaca", "url": "https://example.org/a", "description": "Smaller."},
                ]
                self._json(200, {"web": {"results": results}})

        super().__init__(Handler)


def test_web_search_through_the_brave_provider(tmp_path: Path) -> None:
    brave = _FakeBrave()
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        textwrap.dedent(
            f"""\
            version: 2
            image_name: web-search
            state_dir: ${{env.LLAMA_STACK_STATE_DIR}}
            providers:
              inference:
                - {{provider_id: llama-cpp, provider_type: inline::llama-cpp, config: {{n_ctx: 2048}}}}
              tool_runtime:
                - provider_id: brave-search
                  provider_type: remote::brave-search
                  config:
                    api_key: ${{env.TEST_BRAVE_KEY}}
                    base_url: http://127.0.0.1:{brave.port}/res/v1/web/search
            models:
              - {{model_id: {CHAT_MODEL}, provider_id: llama-cpp, provider_model_id: "{SMOLLM2_GGUF}"}}
            tool_groups:
              - {{toolgroup_id: "builtin::websearch", provider_id: brave-search}}
            server:
              outbound:
                allow_hosts: "127.0.0.1:{brave.port}"
            """
        )
    )
    server = start_server(tmp_path / "state", config=str(run_yaml), env={"TEST_BRAVE_KEY": "brave-key-77"})
    try:
        client = OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key="x", max_retries=0, timeout=120)
        events = list(
            client.responses.create(
                model=CHAT_MODEL,
                input="Search the web for llamas.",
                tools=[{"type": "web_search"}],
                tool_choice={"type": "web_search"},
                extra_body={"max_infer_iters": 2},
                temperature=0,
                max_output_tokens=32,
                stream=True,
            )
        )
        kinds = [e.type for e in events]
        assert kinds[2:7] == [
            "response.output_item.added",
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
            "response.output_item.done",
        ]
        assert events[6].item.type == "web_search_call" and events[6].item.status == "completed"
        final = events[-1].response
        assert [o.type for o in final.output] == ["web_search_call", "message"]
        # The provider asked the search API with the configured key and the model's query.
        (path, token), *_ = brave.seen
        assert token == "brave-key-77" and "q=" in path
    finally:
        server.stop()
        brave.close()
