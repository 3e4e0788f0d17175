"""Tool groups, tools and the tool runtime through the official client."""

from __future__ import annotations

import httpx
import llama_stack_client
import pytest

from conftest import EMBEDDING_MODEL

pytestmark = pytest.mark.integration


@pytest.fixture()
def kb(stack_client):
    stack_client.vector_dbs.register(vector_db_id="kb", embedding_model=EMBEDDING_MODEL)
    stack_client.vector_io.insert(
        vector_db_id="kb",
        chunks=[
            {
                "content": "The office wifi password is printed under the coffee machine.",
                "metadata": {"document_id": "wifi"},
            },
            {
                "content": "Parking spaces are assigned by the facilities team.",
                "metadata": {"document_id": "parking"},
            },
        ],
    )
    yield "kb"
    stack_client.vector_dbs.unregister("kb")


def test_builtin_rag_group_and_its_tool(stack_client) -> None:
    groups = {g.identifier: g for g in stack_client.toolgroups.list()}
    assert groups["builtin::rag"].provider_id == "rag-runtime"
    tools = {t.identifier: t for t in stack_client.tools.list(toolgroup_id="builtin::rag")}
    search = tools["knowledge_search"]
    assert search.toolgroup_id == "builtin::rag"
    assert [p.name for p in search.parameters] == ["query"]
    defs = stack_client.tool_runtime.list_tools(tool_group_id="builtin::rag")
    assert [d.name for d in defs] == ["knowledge_search"]
    assert stack_client.tools.get("knowledge_search").identifier == "knowledge_search"


def test_invoke_knowledge_search(stack_client, kb: str) -> None:
    result = stack_client.tool_runtime.invoke_tool(
        tool_name="knowledge_search",
        kwargs={"query": "Where do I find the wifi password?", "vector_db_ids": [kb]},
    )
    text = "".join(item.text for item in result.content)
    assert "coffee machine" in text
    assert result.metadata["document_ids"][0] == "wifi"


def test_group_args_supply_vector_dbs(stack_client, kb: str) -> None:
    stack_client.toolgroups.register(
        toolgroup_id="office-kb", provider_id="rag-runtime", args={"vector_db_ids": [kb]}
    )
    try:
        assert stack_client.toolgroups.get("office-kb").args == {"vector_db_ids": [kb]}
        assert "office-kb" in {g.identifier for g in stack_client.toolgroups.list()}
    finally:
        stack_client.toolgroups.unregister("office-kb")
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.toolgroups.get("office-kb")


def test_bad_tool_requests(stack_client, base_url: str) -> None:
    with pytest.raises(llama_stack_client.NotFoundError) as info:
        stack_client.tool_runtime.invoke_tool(tool_name="no_such_tool", kwargs={})
    assert "no_such_tool" in str(info.value)
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.tool_runtime.invoke_tool(tool_name="knowledge_search", kwargs={})
    assert "query" in str(info.value)
    with pytest.raises(llama_stack_client.BadRequestError):
        stack_client.tool_runtime.invoke_tool(tool_name="knowledge_search", kwargs={"query": "x"})
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.toolgroups.register(toolgroup_id="x", provider_id="no-such-provider")
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.tools.list(toolgroup_id="nope")
    r = httpx.post(
        f"{base_url}/v1/tool-runtime/invoke",
        json={"tool_name": "knowledge_search", "kwargs": {"query": "x"}},
        headers={"X-LlamaStack-Provider-Data": "{not json"},
    )
    assert r.status_code == 400 and "X-LlamaStack-Provider-Data" in r.json()["detail"]


def test_websearch_and_wolfram_groups_need_a_key(stack_client) -> None:
    groups = {g.identifier: g.provider_id for g in stack_client.toolgroups.list()}
    assert groups["builtin::websearch"] == "brave-search"
    assert groups["builtin::wolfram_alpha"] == "wolfram-alpha"
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.tool_runtime.invoke_tool(tool_name="web_search", kwargs={"query": "llamas"})
    assert "brave_search_api_key" in str(info.value)
