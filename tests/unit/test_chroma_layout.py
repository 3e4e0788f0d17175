"""How chunks sit in chroma records (real embedded chroma): new writes keep each chunk's JSON in the
record's metadata, where chroma does not index it for full-text search, and stores written before,
with the JSON as the record's document, still answer every kind of search."""

from __future__ import annotations

from pathlib import Path

from llamastack.providers.vector_io.chroma.config import ChromaInlineConfig
from llamastack.providers.vector_io.chroma.provider import CHUNK_KEY, ChromaVectorIO
from llamastack.stack.apis.vector_io import Chunk, StoredChunk, VectorDB


def _db() -> VectorDB:
    return VectorDB(identifier="layout", provider_id="p", embedding_model="m", embedding_dimension=3)


def _stored(ident: str, text: str, embedding: list[float]) -> StoredChunk:
    chunk = Chunk(content=text, metadata={"document_id": ident, "title": f"about {text}"})
    return StoredChunk(id=ident, chunk=chunk, embedding=embedding, document_id=ident, text=text)


async def _open(path: Path) -> tuple[ChromaVectorIO, VectorDB]:
    chroma = ChromaVectorIO(ChromaInlineConfig(db_path=str(path)))
    await chroma.initialize()
    return chroma, await chroma.register_vector_db(_db())


async def test_new_writes_keep_chunks_out_of_chroma_documents(tmp_path: Path) -> None:
    chroma, db = await _open(tmp_path / "chroma")
    await chroma.upsert(db, [_stored("a", "llamas hum", [1.0, 0.0, 0.0])])
    record = chroma._collection(db).get(ids=["a"], include=["documents", "metadatas"])
    assert record["documents"] == [None]  # nothing for chroma's full-text index to do
    kept = Chunk.model_validate_json(record["metadatas"][0][CHUNK_KEY])
    assert kept.metadata["title"] == "about llamas hum"
    [(found, score)] = await chroma.query(db, [1.0, 0.0, 0.0], k=1)
    assert found.content == "llamas hum" and found.metadata["title"] == "about llamas hum"
    assert score > 0.99


async def test_records_of_the_earlier_layout_are_still_found(tmp_path: Path) -> None:
    chroma, db = await _open(tmp_path / "chroma")
    earlier = _stored("old", "alpacas graze", [0.0, 1.0, 0.0])
    # As stores written before kept it: the chunk's JSON as chroma's document, only document_id in
    # the metadata.
    chroma._collection(db).upsert(
        ids=[earlier.id],
        embeddings=[earlier.embedding],
        documents=[earlier.chunk.model_dump_json()],
        metadatas=[{"document_id": "old"}],
    )
    await chroma.upsert(db, [_stored("new", "llamas hum", [1.0, 0.0, 0.0])])  # a later write beside it

    hits = await chroma.query(db, [0.0, 1.0, 0.0], k=2)
    assert [c.content for c, _ in hits] == ["alpacas graze", "llamas hum"]
    assert hits[0][0].metadata["title"] == "about alpacas graze"
    assert [c.content for c, _ in await chroma.keyword_query(db, "alpacas", 5)] == ["alpacas graze"]
    assert [c.content for c, _ in await chroma.keyword_query(db, "llamas", 5)] == ["llamas hum"]

    await chroma.delete_documents(db, ["old"])
    assert [c.content for c, _ in await chroma.query(db, [0.0, 1.0, 0.0], k=2)] == ["llamas hum"]
    await chroma.shutdown()
