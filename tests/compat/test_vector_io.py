"""Vector dbs and vector-io through the official client, on every vector store of the local distribution."""

from __future__ import annotations

import httpx
import llama_stack_client
import pytest

from conftest import CHAT_MODEL, EMBEDDING_MODEL

pytestmark = pytest.mark.integration

PROVIDERS = ["chromadb", "sqlite-vec", "chromadb-remote"]
FACTS = {
    "paris": "Paris is the capital and largest city of France, on the river Seine.",
    "llama": "Llamas are domesticated camelids from the Andes, used as pack animals.",
    "python": "Python is a programming language known for its readable syntax.",
    "everest": "Mount Everest is the highest mountain above sea level, in the Himalayas.",
}


def _chunks() -> list[dict]:
    return [{"content": text, "metadata": {"document_id": key, "topic": key}} for key, text in FACTS.items()]


@pytest.fixture(params=PROVIDERS)
def vector_db(request, stack_client) -> str:
    db_id = f"facts-{request.param}"
    stack_client.vector_dbs.register(
        vector_db_id=db_id,
        embedding_model=EMBEDDING_MODEL,
        embedding_dimension=384,
        provider_id=request.param,
    )
    yield db_id
    stack_client.vector_dbs.unregister(db_id)


def test_register_list_get(stack_client, vector_db: str) -> None:
    db = stack_client.vector_dbs.retrieve(vector_db)
    assert (db.embedding_model, db.embedding_dimension) == (EMBEDDING_MODEL, 384)
    assert vector_db in {d.identifier for d in stack_client.vector_dbs.list()}


def test_insert_and_query(stack_client, vector_db: str) -> None:
    stack_client.vector_io.insert(vector_db_id=vector_db, chunks=_chunks())
    r = stack_client.vector_io.query(vector_db_id=vector_db, query="Where do llamas come from?")
    assert r.chunks[0].metadata["document_id"] == "llama"
    assert r.scores == sorted(r.scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in r.scores)
    r = stack_client.vector_io.query(
        vector_db_id=vector_db, query="tallest peak in the world", params={"max_chunks": 2}
    )
    assert len(r.chunks) <= 2 and r.chunks[0].metadata["topic"] == "everest"
    r = stack_client.vector_io.query(
        vector_db_id=vector_db,
        query="tallest peak in the world",
        params={"max_chunks": 4, "score_threshold": 0.5},
    )
    assert [c.metadata["topic"] for c in r.chunks] == ["everest"]


def test_reinserting_replaces_instead_of_duplicating(stack_client, vector_db: str) -> None:
    stack_client.vector_io.insert(vector_db_id=vector_db, chunks=_chunks())
    stack_client.vector_io.insert(vector_db_id=vector_db, chunks=_chunks())
    r = stack_client.vector_io.query(
        vector_db_id=vector_db, query="llamas", params={"max_chunks": 10, "score_threshold": -1.0}
    )
    assert len(r.chunks) == len(FACTS)


def test_chunks_with_their_own_embeddings(stack_client, vector_db: str) -> None:
    vector = [0.0] * 384
    vector[7] = 1.0
    stack_client.vector_io.insert(
        vector_db_id=vector_db,
        chunks=[{"content": "seven", "metadata": {"document_id": "v"}, "embedding": vector}],
    )
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.vector_io.insert(
            vector_db_id=vector_db, chunks=[{"content": "bad", "metadata": {}, "embedding": [1.0, 2.0]}]
        )
    assert "384" in str(info.value)
    r = stack_client.vector_io.query(
        vector_db_id=vector_db, query="seven", params={"max_chunks": 10, "score_threshold": -1.0}
    )
    assert [c.content for c in r.chunks] == ["seven"]  # the bad chunk was not stored


def test_bad_vector_db_requests(stack_client, base_url: str) -> None:
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.vector_dbs.retrieve("nope")
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.vector_io.query(vector_db_id="nope", query="x")
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.vector_io.insert(vector_db_id="nope", chunks=_chunks())
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.vector_dbs.register(
            vector_db_id="x", embedding_model=EMBEDDING_MODEL, embedding_dimension=768
        )
    assert "384" in str(info.value)
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.vector_dbs.register(vector_db_id="x", embedding_model="no-such-model")
    with pytest.raises(llama_stack_client.BadRequestError):
        stack_client.vector_dbs.register(vector_db_id="x", embedding_model=CHAT_MODEL)
    assert "x" not in {d.identifier for d in stack_client.vector_dbs.list()}
    r = httpx.post(f"{base_url}/v1/vector-io/query", json={"vector_db_id": "nope"})
    assert r.status_code == 400 and "query" in r.json()["detail"]


def test_query_param_errors(stack_client, vector_db: str) -> None:
    for params in ({"max_chunks": 0}, {"max_chunks": "3"}, {"score_threshold": "high"}):
        with pytest.raises(llama_stack_client.BadRequestError):
            stack_client.vector_io.query(vector_db_id=vector_db, query="x", params=params)
    for params, allowed in (
        ({"mode": "semantic"}, "'vector', 'keyword', 'hybrid'"),
        ({"mode": "hybrid", "ranker": {"type": "linear"}}, "'rrf', 'weighted'"),
        ({"mode": "hybrid", "ranker": "borda"}, "'rrf', 'weighted'"),
        ({"mode": "hybrid", "ranker": {"type": "weighted", "alpha": 1.5}}, "alpha"),
        ({"mode": "hybrid", "ranker": {"type": "rrf", "impact_factor": -1}}, "impact_factor"),
    ):
        with pytest.raises(llama_stack_client.BadRequestError) as info:
            stack_client.vector_io.query(vector_db_id=vector_db, query="x", params=params)
        assert allowed in str(info.value), params


def test_precomputed_embeddings_are_found_without_params(stack_client, vector_db: str) -> None:
    """A db whose only chunk brought its own embedding, here the opposite of the query's (cosine -1):
    every mode finds it with default params."""
    query = "Which animal hums to its young?"
    [embedding] = stack_client.inference.embeddings(model_id=EMBEDDING_MODEL, contents=[query]).embeddings
    stack_client.vector_io.insert(
        vector_db_id=vector_db,
        chunks=[
            {
                "content": "Mothers hum to their young.",
                "metadata": {"document_id": "v"},
                "embedding": [-x for x in embedding],
            }
        ],
    )
    r = stack_client.vector_io.query(vector_db_id=vector_db, query=query)
    assert [c.content for c in r.chunks] == ["Mothers hum to their young."]
    assert r.scores[0] == pytest.approx(-1.0, abs=1e-3)
    r = stack_client.vector_io.query(vector_db_id=vector_db, query=query, params={"mode": "keyword"})
    assert len(r.chunks) == 1 and r.scores[0] > 0
    r = stack_client.vector_io.query(vector_db_id=vector_db, query=query, params={"mode": "hybrid"})
    assert len(r.chunks) == 1
    # An explicit threshold still applies.
    r = stack_client.vector_io.query(vector_db_id=vector_db, query=query, params={"score_threshold": 0})
    assert r.chunks == []


def test_keyword_mode(stack_client, vector_db: str) -> None:
    stack_client.vector_io.insert(vector_db_id=vector_db, chunks=_chunks())
    r = stack_client.vector_io.query(
        vector_db_id=vector_db, query="Which animals carry packs in the Andes?", params={"mode": "keyword"}
    )
    assert r.chunks[0].metadata["document_id"] == "llama"
    assert all(s > 0 for s in r.scores) and r.scores == sorted(r.scores, reverse=True)
    # Only chunks sharing a word with the query; the query is words, not FTS syntax.
    r = stack_client.vector_io.query(
        vector_db_id=vector_db, query='Seine" NEAR(* ^', params={"mode": "keyword", "max_chunks": 10}
    )
    assert [c.metadata["topic"] for c in r.chunks] == ["paris"]
    r = stack_client.vector_io.query(vector_db_id=vector_db, query="quokka", params={"mode": "keyword"})
    assert r.chunks == [] and r.scores == []
    top = stack_client.vector_io.query(
        vector_db_id=vector_db, query="highest mountain", params={"mode": "keyword"}
    ).scores[0]
    r = stack_client.vector_io.query(
        vector_db_id=vector_db,
        query="highest mountain",
        params={"mode": "keyword", "max_chunks": 4, "score_threshold": top},
    )
    assert [c.metadata["topic"] for c in r.chunks] == ["everest"]


def test_hybrid_mode_with_each_ranker(stack_client, vector_db: str) -> None:
    stack_client.vector_io.insert(vector_db_id=vector_db, chunks=_chunks())
    query = "tallest peak in the Himalayas"
    for ranker, ceiling in (
        (None, 2 / 61),
        ({"type": "rrf", "impact_factor": 10}, 2 / 11),
        ({"type": "weighted", "alpha": 0.5}, 1.0),
        ({"type": "weighted", "alpha": 0.0}, 1.0),
        ("weighted", 1.0),
    ):
        params = {"mode": "hybrid", "max_chunks": 4, **({"ranker": ranker} if ranker else {})}
        r = stack_client.vector_io.query(vector_db_id=vector_db, query=query, params=params)
        assert r.chunks[0].metadata["topic"] == "everest", ranker
        assert r.scores == sorted(r.scores, reverse=True)
        assert all(0 <= s <= ceiling + 1e-9 for s in r.scores), (ranker, r.scores)
        assert len({c.metadata["topic"] for c in r.chunks}) == len(r.chunks)  # fused, not repeated
    # alpha 1 is the vector ranking alone.
    vector = stack_client.vector_io.query(vector_db_id=vector_db, query=query, params={"max_chunks": 4})
    weighted = stack_client.vector_io.query(
        vector_db_id=vector_db,
        query=query,
        params={"mode": "hybrid", "max_chunks": 4, "ranker": {"type": "weighted", "alpha": 1.0}},
    )
    assert [c.metadata["topic"] for c in weighted.chunks] == [c.metadata["topic"] for c in vector.chunks]


def test_rag_tool_query_modes(stack_client, vector_db: str) -> None:
    stack_client.vector_io.insert(vector_db_id=vector_db, chunks=_chunks())
    for config in (
        {"mode": "keyword"},
        {"mode": "hybrid"},
        {"mode": "hybrid", "ranker": {"type": "weighted", "alpha": 0.3}},
        {"mode": "hybrid", "ranker": {"type": "rrf", "impact_factor": 5}},
        {"mode": "vector"},
    ):
        r = stack_client.tool_runtime.rag_tool.query(
            content="Which animals carry packs in the Andes?",
            vector_db_ids=[vector_db],
            query_config={"max_chunks": 2, **config},
        )
        assert r.metadata["document_ids"][0] == "llama", config
        assert len(r.metadata["document_ids"]) <= 2
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.tool_runtime.rag_tool.query(
            content="x", vector_db_ids=[vector_db], query_config={"mode": "fuzzy"}
        )
    assert "'vector', 'keyword', 'hybrid'" in str(info.value)
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        stack_client.tool_runtime.rag_tool.query(
            content="x", vector_db_ids=[vector_db], query_config={"mode": "hybrid", "ranker": {"type": "x"}}
        )
    assert "rrf" in str(info.value) and "weighted" in str(info.value)
