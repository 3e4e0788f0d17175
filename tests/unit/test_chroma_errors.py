"""chromadb's own errors (real embedded chroma) reach the caller as typed errors, through the stack's
boundary helper: a wrong-sized vector is the caller's 400, not a 502 or a 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamastack.providers.vector_io.chroma.config import ChromaInlineConfig
from llamastack.providers.vector_io.chroma.provider import ChromaVectorIO
from llamastack.stack.apis.vector_io import Chunk, StoredChunk, VectorDB
from llamastack.stack.errors import BadRequestError


async def test_chroma_errors_become_typed_errors(tmp_path: Path) -> None:
    chroma = ChromaVectorIO(ChromaInlineConfig(db_path=str(tmp_path / "chroma")))
    await chroma.initialize()
    db = await chroma.register_vector_db(
        VectorDB(identifier="errs", provider_id="p", embedding_model="m", embedding_dimension=3)
    )
    chunk = Chunk(content="llamas", metadata={"document_id": "d"})
    await chroma.upsert(
        db, [StoredChunk(id="a", chunk=chunk, embedding=[1.0, 0.0, 0.0], document_id="d", text="llamas")]
    )
    with pytest.raises(BadRequestError) as info:
        await chroma.query(db, [1.0, 0.0], k=1)  # two numbers for a three-dimensional collection
    assert info.value.status_code == 400
    assert info.value.detail.startswith("chroma rejected the request (HTTP 400 Bad Request): ")
    assert "dimension" in info.value.detail
    await chroma.unregister_vector_db(db)
    await chroma.unregister_vector_db(db)  # already gone: chroma's NotFoundError is not an error here
