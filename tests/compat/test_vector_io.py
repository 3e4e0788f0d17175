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
    for params in ({"max_chunks": 0}, {"max_chunks": "3"}, {"score_threshold": "high"}, {"mode": "keyword"}):
        with pytest.raises(llama_stack_client.BadRequestError):
            stack_client.vector_io.query(vector_db_id=vector_db, query="x", params=params)
