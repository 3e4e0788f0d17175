"""OpenAI vector stores with the openai SDK: files in, searchable chunks out."""

from __future__ import annotations

import io

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

HANDBOOK = """Employee handbook.

Holidays: every employee has twenty-five days of paid holiday per year.

Remote work: staff may work from home up to three days a week after their probation period.

Expenses: receipts must be submitted within thirty days of purchase.
"""
RECIPES = """# Soup recipes

Tomato soup: roast tomatoes with garlic, then blend with vegetable stock.

Pea soup: simmer split peas with ham for two hours.
"""


def _upload(openai_client, name: str, text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return openai_client.files.create(file=(name, io.BytesIO(data)), purpose="assistants").id


@pytest.fixture()
def store(openai_client):
    handbook = _upload(openai_client, "handbook.txt", HANDBOOK)
    vs = openai_client.vector_stores.create(name="company", file_ids=[handbook], metadata={"team": "hr"})
    yield vs, handbook
    openai_client.vector_stores.delete(vs.id)


def test_create_with_files_and_search(openai_client, store) -> None:
    vs, handbook = store
    assert vs.name == "company" and vs.metadata == {"team": "hr"}
    assert vs.file_counts.completed == 1 and vs.file_counts.total == 1
    results = openai_client.vector_stores.search(vs.id, query="How many vacation days do I get?")
    top = results.data[0]
    assert top.file_id == handbook and top.filename == "handbook.txt"
    assert "twenty-five days" in top.content[0].text
    scores = [r.score for r in results.data]
    assert scores == sorted(scores, reverse=True)


def test_attach_with_static_chunking_attributes_and_filters(openai_client, store) -> None:
    vs, handbook = store
    recipes = _upload(openai_client, "recipes.md", RECIPES)
    f = openai_client.vector_stores.files.create(
        vector_store_id=vs.id,
        file_id=recipes,
        attributes={"kind": "food", "year": 2024},
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
        },
    )
    assert f.status == "completed" and f.attributes == {"kind": "food", "year": 2024}
    assert f.chunking_strategy.type == "static"
    listed = openai_client.vector_stores.files.list(vector_store_id=vs.id)
    assert {x.id for x in listed.data} == {handbook, recipes}
    only_food = openai_client.vector_stores.search(
        vs.id, query="soup", filters={"type": "eq", "key": "kind", "value": "food"}
    )
    assert only_food.data and {r.file_id for r in only_food.data} == {recipes}
    recent = openai_client.vector_stores.search(
        vs.id,
        query="holiday",
        filters={
            "type": "and",
            "filters": [
                {"type": "gte", "key": "year", "value": 2020},
                {"type": "ne", "key": "kind", "value": "x"},
            ],
        },
    )
    assert {r.file_id for r in recent.data} == {recipes}
    strict = openai_client.vector_stores.search(
        vs.id, query="tomato soup", ranking_options={"score_threshold": 0.99}
    )
    assert strict.data == []
    updated = openai_client.vector_stores.files.update(
        vector_store_id=vs.id, file_id=recipes, attributes={"kind": "cooking"}
    )
    assert updated.attributes == {"kind": "cooking"}
    assert (
        openai_client.vector_stores.search(
            vs.id, query="soup", filters={"type": "eq", "key": "kind", "value": "food"}
        ).data
        == []
    )
    openai_client.vector_stores.files.delete(vector_store_id=vs.id, file_id=recipes)
    after = openai_client.vector_stores.search(vs.id, query="tomato soup recipe", max_num_results=10)
    assert recipes not in {r.file_id for r in after.data}
    assert openai_client.vector_stores.retrieve(vs.id).file_counts.total == 1


def test_store_crud_and_file_content(openai_client, store, base_url: str) -> None:
    vs, handbook = store
    updated = openai_client.vector_stores.update(vs.id, name="company-2", metadata={"team": "ops"})
    assert (updated.name, updated.metadata) == ("company-2", {"team": "ops"})
    assert vs.id in {v.id for v in openai_client.vector_stores.list()}
    content = httpx.get(f"{base_url}/v1/openai/v1/vector_stores/{vs.id}/files/{handbook}/content").json()
    assert content["file_id"] == handbook and content["filename"] == "handbook.txt"
    assert "twenty-five days" in content["content"][0]["text"]


def test_bad_inputs_leave_the_store_intact(openai_client, store) -> None:
    vs, handbook = store
    blob = _upload(openai_client, "archive.zip", b"PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(openai.BadRequestError):
        openai_client.vector_stores.files.create(vector_store_id=vs.id, file_id=blob)
    with pytest.raises(openai.NotFoundError):
        openai_client.vector_stores.files.create(vector_store_id=vs.id, file_id="file-doesnotexist")
    with pytest.raises(openai.NotFoundError):
        openai_client.vector_stores.retrieve("vs_nope")
    with pytest.raises(openai.NotFoundError):
        openai_client.vector_stores.search("vs_nope", query="x")
    with pytest.raises(openai.BadRequestError):
        openai_client.vector_stores.search(vs.id, query="x", filters={"type": "like", "key": "a", "value": 1})
    with pytest.raises(openai.BadRequestError):
        openai_client.vector_stores.files.create(
            vector_store_id=vs.id, file_id=handbook, attributes={"nested": {"a": 1}}
        )
    assert openai_client.vector_stores.retrieve(vs.id).file_counts.total == 1
    assert openai_client.vector_stores.search(vs.id, query="expenses receipts").data


def test_llama_stack_client_vector_stores(stack_client, openai_client) -> None:
    """The same vector stores through llama-stack-client 0.2.12's vector_stores resource."""
    file_id = _upload(openai_client, "recipes.md", RECIPES)
    vs = stack_client.vector_stores.create(name="kitchen", file_ids=[file_id])
    try:
        assert stack_client.vector_stores.retrieve(vs.id).file_counts.completed == 1
        attached = stack_client.vector_stores.files.create(
            vector_store_id=vs.id, file_id=file_id, attributes={"kind": "food"}
        )
        assert attached.status == "completed"
        results = stack_client.vector_stores.search(vector_store_id=vs.id, query="how to make pea soup")
        assert results.data[0].file_id == file_id
        assert "split peas" in results.data[0].content[0].text
        assert vs.id in {v.id for v in stack_client.vector_stores.list().data}
    finally:
        stack_client.vector_stores.delete(vs.id)


@pytest.fixture(params=["chromadb", "sqlite-vec", "chromadb-remote"])
def provider_store(request, openai_client):
    """The handbook store on each vector_io provider."""
    handbook = _upload(openai_client, "handbook.txt", HANDBOOK)
    vs = openai_client.vector_stores.create(
        name=f"company-{request.param}", file_ids=[handbook], extra_body={"provider_id": request.param}
    )
    yield vs, handbook
    openai_client.vector_stores.delete(vs.id)


def test_search_modes_and_rankers(openai_client, provider_store) -> None:
    vs, handbook = provider_store
    keyword = openai_client.vector_stores.search(
        vs.id, query="receipts purchase", extra_body={"search_mode": "keyword"}
    )
    assert keyword.data and "receipts" in keyword.data[0].content[0].text
    assert all(r.score > 0 for r in keyword.data)
    none = openai_client.vector_stores.search(vs.id, query="quokka", extra_body={"search_mode": "keyword"})
    assert none.data == []
    for ranker in (None, "auto", "none", "rrf", "weighted"):
        options = {"ranking_options": {"ranker": ranker}} if ranker else {}
        hybrid = openai_client.vector_stores.search(
            vs.id, query="How many vacation days do I get?", extra_body={"search_mode": "hybrid"}, **options
        )
        assert hybrid.data[0].file_id == handbook, ranker
        assert "twenty-five days" in hybrid.data[0].content[0].text
        scores = [r.score for r in hybrid.data]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.vector_stores.search(vs.id, query="x", extra_body={"search_mode": "fuzzy"})
    assert "'vector', 'keyword', 'hybrid'" in info.value.response.json()["detail"]
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.vector_stores.search(
            vs.id, query="x", extra_body={"search_mode": "hybrid"}, ranking_options={"ranker": "borda"}
        )
    assert "'rrf', 'weighted'" in info.value.response.json()["detail"]


def test_chunks_inserted_with_vector_io_are_searchable_with_their_metadata(
    openai_client, stack_client, provider_store
) -> None:
    """vector-io inserts into a vector store's id: search shows their metadata as attributes and
    filters on it, in every mode."""
    vs, handbook = provider_store
    stack_client.vector_io.insert(
        vector_db_id=vs.id,
        chunks=[
            {
                "content": "Parking: staff park in the north lot.",
                "metadata": {"document_id": "memo-1", "lang": "en"},
            },
            {
                "content": "Parking : le parking nord est réservé.",
                "metadata": {"document_id": "memo-2", "lang": "fr"},
            },
        ],
    )
    for mode in ("vector", "keyword", "hybrid"):
        results = openai_client.vector_stores.search(
            vs.id, query="Where can staff park?", extra_body={"search_mode": mode}
        )
        top = results.data[0]
        assert top.attributes["document_id"] == "memo-1" and top.attributes["lang"] == "en", mode
        assert top.file_id == "memo-1"
        french = openai_client.vector_stores.search(
            vs.id,
            query="parking",
            filters={"type": "eq", "key": "lang", "value": "fr"},
            extra_body={"search_mode": mode},
        )
        assert [r.attributes["document_id"] for r in french.data] == ["memo-2"], mode
    # Chunks of an attached file show that file's attributes (here none), as OpenAI's search does.
    holiday = openai_client.vector_stores.search(
        vs.id, query="paid holiday per year", extra_body={"search_mode": "keyword"}
    )
    assert holiday.data[0].file_id == handbook and holiday.data[0].attributes == {}


def test_files_that_cannot_be_read_as_text_are_4xx_naming_the_file(openai_client, server) -> None:
    """A corrupt PDF is refused at attach; a file damaged on disk after its attach cannot show its
    content: both are 400s whose detail names the file, never a 500."""
    api = f"{server.base_url}/v1/openai/v1"
    broken = _upload(openai_client, "broken.pdf", b"%PDF-1.7\nthis is not really a pdf")
    notes = _upload(openai_client, "notes.txt", HANDBOOK)
    vs = openai_client.vector_stores.create(name="damaged", file_ids=[notes])
    try:
        attach = httpx.post(f"{api}/vector_stores/{vs.id}/files", json={"file_id": broken}, timeout=60)
        assert attach.status_code == 400, attach.text
        assert (
            f"File '{broken}' (broken.pdf) cannot be indexed: Could not read the PDF"
            in attach.json()["detail"]
        )
        content = f"{api}/vector_stores/{vs.id}/files/{notes}/content"
        assert "twenty-five days" in httpx.get(content).json()["content"][0]["text"]
        (server.state_dir / "files" / notes).write_bytes(b"%PDF-1.7\nthe disk ate this file")
        r = httpx.get(content)
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert detail.startswith(f"File '{notes}' (notes.txt) cannot be read as text: Could not read the PDF")
    finally:
        openai_client.vector_stores.delete(vs.id)
