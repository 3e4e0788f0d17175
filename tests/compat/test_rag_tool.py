"""The RAG tool through the official client: documents in, context out."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import llama_stack_client
import pytest

from conftest import EMBEDDING_MODEL, LoopbackWeb

pytestmark = pytest.mark.integration

GUIDE = """# Llama care guide

## Feeding
Llamas graze on grass and hay. An adult eats about two percent of its body weight every day.

## Shearing
Shear llamas once a year, in spring, before the hot season starts.

## Herd behaviour
Llamas are herd animals and become stressed when kept alone; keep at least two together.
"""
HTML = (
    "<html><head><style>p{color:red}</style><script>var secret='do not index';</script></head>"
    "<body><nav>menu</nav><h1>Alpacas</h1>"
    "<p>Alpacas are smaller than llamas and are bred for fibre.</p></body></html>"
)


@pytest.fixture()
def rag_db(stack_client) -> Iterator[str]:
    stack_client.vector_dbs.register(vector_db_id="rag-docs", embedding_model=EMBEDDING_MODEL)
    yield "rag-docs"
    stack_client.vector_dbs.unregister("rag-docs")


@pytest.fixture(scope="module")
def web_server(docs_server: LoopbackWeb) -> str:
    """A real HTTP server on loopback (allowed by the server's outbound policy) serving a document."""
    docs_server.routes["/alpacas.html"] = (200, {"Content-Type": "text/html; charset=utf-8"}, HTML.encode())
    return docs_server.url


def _query(stack_client, text: str, db: str, **config) -> tuple[str, dict]:
    r = stack_client.tool_runtime.rag_tool.query(
        content=text, vector_db_ids=[db], query_config=config or None
    )
    content = "".join(item.text for item in r.content) if r.content else ""
    return content, r.metadata


def test_insert_text_markdown_html_url_and_data_url(stack_client, rag_db: str, web_server: str) -> None:
    data_url = "data:text/plain;base64," + base64.b64encode(b"Vicunas are wild relatives of llamas.").decode()
    stack_client.tool_runtime.rag_tool.insert(
        vector_db_id=rag_db,
        chunk_size_in_tokens=64,
        documents=[
            {
                "document_id": "guide",
                "content": GUIDE,
                "mime_type": "text/markdown",
                "metadata": {"kind": "guide"},
            },
            {"document_id": "alpacas", "content": {"uri": f"{web_server}/alpacas.html"}, "metadata": {}},
            {"document_id": "vicunas", "content": data_url, "metadata": {}},
        ],
    )
    content, metadata = _query(stack_client, "How often should a llama be shorn?", rag_db)
    assert content.startswith("knowledge_search tool found")
    assert "spring" in content
    assert metadata["document_ids"][0] == "guide"
    content, metadata = _query(stack_client, "What are alpacas bred for?", rag_db)
    assert "fibre" in content and metadata["document_ids"][0] == "alpacas"
    assert f"'source': '{web_server}/alpacas.html'" in content  # metadata carried into the context
    assert "do not index" not in content and "color:red" not in content
    content, _ = _query(stack_client, "wild relatives of llamas", rag_db, max_chunks=1)
    assert "Vicunas" in content


def test_reinserting_a_document_replaces_its_chunks(stack_client, rag_db: str) -> None:
    for text in ("Old text: llamas are purple.", "New text: llamas are brown or white."):
        stack_client.tool_runtime.rag_tool.insert(
            vector_db_id=rag_db,
            chunk_size_in_tokens=64,
            documents=[{"document_id": "colour", "content": text, "metadata": {}}],
        )
    r = stack_client.vector_io.query(
        vector_db_id=rag_db, query="llama colour", params={"max_chunks": 10, "score_threshold": -1}
    )
    texts = [c.content for c in r.chunks]
    assert texts == ["New text: llamas are brown or white."]
    assert r.chunks[0].metadata["document_id"] == "colour"


def test_query_config_template_and_token_budget(stack_client, rag_db: str) -> None:
    stack_client.tool_runtime.rag_tool.insert(
        vector_db_id=rag_db,
        chunk_size_in_tokens=32,
        documents=[{"document_id": "guide", "content": GUIDE, "metadata": {}}],
    )
    content, metadata = _query(
        stack_client, "llama food", rag_db, max_chunks=3, chunk_template="[{index}] {chunk.content}\n"
    )
    assert "[1] " in content and "Metadata:" not in content
    assert len(metadata["chunks"]) <= 3
    _, small_meta = _query(stack_client, "llama food", rag_db, max_chunks=3, max_tokens_in_context=60)
    assert len(small_meta["chunks"]) < len(metadata["chunks"]) or len(metadata["chunks"]) == 1


def test_rag_bad_inputs(stack_client, rag_db: str, web_server: str) -> None:
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.tool_runtime.rag_tool.insert(
            vector_db_id="nope",
            chunk_size_in_tokens=64,
            documents=[{"document_id": "a", "content": "x", "metadata": {}}],
        )
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.tool_runtime.rag_tool.insert(
            vector_db_id=rag_db,
            chunk_size_in_tokens=64,
            documents=[
                {"document_id": "ok", "content": "fine text", "metadata": {}},
                {"document_id": "missing", "content": {"uri": f"{web_server}/missing.html"}, "metadata": {}},
            ],
        )
    assert "missing" in str(info.value)
    with pytest.raises(llama_stack_client.BadRequestError):
        stack_client.tool_runtime.rag_tool.insert(
            vector_db_id=rag_db,
            chunk_size_in_tokens=64,
            documents=[
                {"document_id": "bin", "content": "data:application/zip;base64,UEsDBA==", "metadata": {}}
            ],
        )
    # A failed insert stores nothing, not even the good document of the batch.
    r = stack_client.vector_io.query(vector_db_id=rag_db, query="fine text", params={"score_threshold": -1})
    assert r.chunks == []
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.tool_runtime.rag_tool.query(content="x", vector_db_ids=["nope"])


def test_knowledge_search_tool_result_shape(stack_client, rag_db: str) -> None:
    question = "When are llamas shorn?"
    empty = stack_client.tool_runtime.invoke_tool(
        tool_name="knowledge_search", kwargs={"query": question, "vector_db_ids": [rag_db]}
    )
    # Nothing indexed yet: still an answer the model can read, and empty metadata.
    assert "found no chunks" in "".join(i.text for i in empty.content) and question in empty.content[0].text
    assert empty.metadata == {"document_ids": [], "chunks": [], "scores": []}
    stack_client.tool_runtime.rag_tool.insert(
        vector_db_id=rag_db,
        chunk_size_in_tokens=32,
        documents=[{"document_id": "guide", "content": GUIDE, "metadata": {}}],
    )
    result = stack_client.tool_runtime.invoke_tool(
        tool_name="knowledge_search",
        kwargs={"query": question, "vector_db_ids": [rag_db], "query_config": {"max_chunks": 2}},
    )
    texts = [i.text for i in result.content]
    meta = result.metadata
    assert len(meta["chunks"]) == len(meta["document_ids"]) == len(meta["scores"]) == 2
    assert meta["document_ids"] == ["guide", "guide"] and meta["scores"][0] >= meta["scores"][1]
    assert texts[0].startswith("knowledge_search tool found 2 chunks")
    assert texts[-2] == "END of knowledge_search tool results.\n"
    assert texts[-1] == (
        f'The above results were retrieved to help answer the user\'s query: "{question}". '
        "Use them as supporting information only in answering this query.\n"
    )
    assert "spring" in "".join(meta["chunks"])
