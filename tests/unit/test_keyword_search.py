"""Keyword search in each vector_io provider (real sqlite FTS5, real chroma + bm25s), and the one
fusion of vector and keyword rankings that every entry point shares."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llamastack.providers.vector_io.base import storage_name
from llamastack.stack import ranking
from llamastack.stack.apis.vector_io import Chunk, RRFRanker, StoredChunk, VectorDB, WeightedRanker
from llamastack.stack.errors import BadRequestError

TEXTS = {
    "nile": "The Nile flows north through Africa into the Mediterranean Sea.",
    "amazon": "The Amazon river carries more water than any other river on Earth.",
    "llama": "Llamas are pack animals from the Andes; they hum to their young.",
    "cafe": "A café serves coffee and small cakes.",
}


def _db(name: str = "kw") -> VectorDB:
    return VectorDB(
        identifier=name,
        provider_id="p",
        provider_resource_id=name,
        embedding_model="m",
        embedding_dimension=3,
    )


def _item(key: str, text: str | None = None) -> StoredChunk:
    text = text or TEXTS[key]
    chunk = Chunk(content=text, metadata={"document_id": key})
    return StoredChunk(id=key, chunk=chunk, embedding=[1.0, 0.5, 0.25], document_id=key, text=text)


async def _open(kind: str, folder: Path):
    if kind == "sqlite-vec":
        from llamastack.providers.vector_io.sqlite_vec.config import SqliteVecConfig
        from llamastack.providers.vector_io.sqlite_vec.provider import SqliteVecVectorIO

        return await SqliteVecVectorIO.open(SqliteVecConfig(db_path=str(folder / "vec.db")))
    from llamastack.providers.vector_io.chroma.config import ChromaInlineConfig
    from llamastack.providers.vector_io.chroma.provider import ChromaVectorIO

    impl = ChromaVectorIO(ChromaInlineConfig(db_path=str(folder / "chroma")))
    await impl.initialize()
    return impl


@pytest.fixture(params=["sqlite-vec", "chromadb"])
async def provider(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator:
    impl = await _open(request.param, tmp_path)
    db = await impl.register_vector_db(_db())
    await impl.upsert(db, [_item(k) for k in TEXTS])
    yield impl
    await impl.unregister_vector_db(db)
    await impl.shutdown()


def _keys(hits: list[tuple[Chunk, float]]) -> list[str]:
    return [c.metadata["document_id"] for c, _ in hits]


async def test_keyword_scores_are_positive_best_first_and_stemmed(provider) -> None:
    hits = await provider.keyword_query(_db(), "Which rivers carry the most water?", 10)
    assert _keys(hits)[0] == "amazon"
    scores = [s for _, s in hits]
    assert all(s > 0 for s in scores) and scores == sorted(scores, reverse=True)
    # "hums" and "llama" reach "hum" and "Llamas" through the stemmer; diacritics do not matter.
    assert _keys(await provider.keyword_query(_db(), "llama hums", 10)) == ["llama"]
    assert _keys(await provider.keyword_query(_db(), "cafe", 10)) == ["cafe"]
    assert len(await provider.keyword_query(_db(), "river the", 1)) == 1


async def test_keyword_query_is_plain_words_not_query_syntax(provider) -> None:
    assert await provider.keyword_query(_db(), "zebra quokka", 10) == []
    assert await provider.keyword_query(_db(), "?!  ...", 10) == []
    # FTS5 operators and quotes in user text are words like any other ("and" matches the café).
    hits = await provider.keyword_query(_db(), 'Andes" OR NEAR(* AND ^pack -animals:', 10)
    assert _keys(hits) == ["llama", "cafe"]


async def test_keyword_index_follows_writes(provider) -> None:
    db = _db()
    await provider.upsert(db, [_item("nile", "The Nile is a long river in Egypt with crocodiles.")])
    assert _keys(await provider.keyword_query(db, "crocodiles", 10)) == ["nile"]
    assert await provider.keyword_query(db, "Mediterranean", 10) == []
    await provider.delete_documents(db, ["nile"])
    assert await provider.keyword_query(db, "crocodiles Nile", 10) == []
    await provider.upsert(db, [_item("zebra", "Zebras have stripes.")])
    assert _keys(await provider.keyword_query(db, "stripes", 10)) == ["zebra"]


async def test_delete_documents_removes_those_and_only_those(provider) -> None:
    db = _db()
    # Absent ids and a repeated one are no error; every chunk of the named documents goes.
    await provider.delete_documents(db, ["nile", "amazon", "nile", "not-there"])
    assert await provider.keyword_query(db, "river Nile Mediterranean", 10) == []
    assert sorted(_keys(await provider.keyword_query(db, "llamas cafe", 10))) == ["cafe", "llama"]
    assert sorted(_keys(await provider.query(db, [1.0, 0.5, 0.25], 10))) == ["cafe", "llama"]
    await provider.delete_documents(db, [])


async def test_chroma_writes_a_revision_only_when_a_delete_removes_something(tmp_path: Path) -> None:
    """An ingest of many new documents first clears each of them: that must not cost a store write
    (a new revision, which also makes every replica rebuild its keyword index) per document."""
    impl = await _open("chromadb", tmp_path)
    db = await impl.register_vector_db(_db())
    await impl.upsert(db, [_item(k) for k in TEXTS])
    before = await impl._revision(db)
    await impl.delete_documents(db, [f"new-{i}" for i in range(2500)])  # more than one page of ids
    assert await impl._revision(db) == before
    await impl.delete_documents(db, [*(f"new-{i}" for i in range(1500)), "cafe"])  # "cafe" on page 2
    assert await impl._revision(db) != before
    assert sorted(_keys(await impl.query(db, [1.0, 0.5, 0.25], 10))) == ["amazon", "llama", "nile"]
    await impl.shutdown()


async def test_sqlite_vec_indexes_chunks_stored_before_keyword_search(tmp_path: Path) -> None:
    impl = await _open("sqlite-vec", tmp_path)
    db = await impl.register_vector_db(_db())
    await impl.upsert(db, [_item(k) for k in TEXTS])
    await impl.shutdown()
    conn = sqlite3.connect(tmp_path / "vec.db")  # a file as older versions wrote it: no FTS table
    conn.execute(f"DROP TABLE {storage_name('kw')}_fts")
    conn.commit()
    conn.close()
    impl = await _open("sqlite-vec", tmp_path)
    await impl.register_vector_db(db)
    assert _keys(await impl.keyword_query(db, "humming", 10)) == ["llama"]
    await impl.shutdown()


async def test_chroma_keyword_index_sees_writes_of_another_client(tmp_path: Path) -> None:
    """Two providers on one chroma store stand for two replicas on one chroma server."""
    first, second = await _open("chromadb", tmp_path), await _open("chromadb", tmp_path)
    db = _db()
    for impl in (first, second):
        await impl.register_vector_db(db)
    await first.upsert(db, [_item("llama")])
    assert _keys(await second.keyword_query(db, "humming", 10)) == ["llama"]
    await first.upsert(db, [_item("zebra", "Zebras have stripes.")])
    assert _keys(await second.keyword_query(db, "stripes", 10)) == ["zebra"]
    await first.delete_documents(db, ["zebra"])
    assert await second.keyword_query(db, "stripes", 10) == []


# --- fusion and validation --------------------------------------------------------------------------


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = ranking.fuse([("a", 0.9), ("b", 0.8)], [("b", 7.0), ("c", 3.0)], RRFRanker(impact_factor=1))
    assert fused == [("b", 1 / 3 + 1 / 2), ("a", 1 / 2), ("c", 1 / 3)]


def test_weighted_blends_normalised_scores() -> None:
    vector, keyword = [("a", 0.9), ("b", 0.5), ("c", 0.1)], [("c", 9.0), ("b", 5.0)]
    assert [k for k, _ in ranking.fuse(vector, keyword, WeightedRanker(alpha=1.0))] == ["a", "b", "c"]
    assert [k for k, _ in ranking.fuse(vector, keyword, WeightedRanker(alpha=0.0))] == ["c", "a", "b"]
    fused = dict(ranking.fuse(vector, keyword, WeightedRanker(alpha=0.5)))
    assert fused == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.5})
    assert all(0.0 <= s <= 1.0 for s in fused.values())


def test_modes_and_rankers_are_validated() -> None:
    assert ranking.search_mode(None) == "vector"
    assert ranking.ranker(None) == RRFRanker(impact_factor=60.0)
    assert ranking.ranker("weighted") == WeightedRanker(alpha=0.5)
    assert ranking.ranker({"type": "weighted", "alpha": 0.2}).alpha == 0.2
    with pytest.raises(BadRequestError, match="'vector', 'keyword', 'hybrid'"):
        ranking.search_mode("semantic")
    with pytest.raises(BadRequestError, match="'rrf', 'weighted'"):
        ranking.ranker({"type": "linear"})
    with pytest.raises(BadRequestError, match="alpha"):
        ranking.ranker({"type": "weighted", "alpha": 2})
    with pytest.raises(BadRequestError, match="impact_factor"):
        ranking.ranker({"type": "rrf", "impact_factor": 0})
