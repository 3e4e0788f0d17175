"""What a vector_io provider implements, and the chunk record it stores."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from llamastack.stack.apis.vector_io import Chunk, VectorDB


@dataclass(slots=True)
class StoredChunk:
    id: str  # stable: the same content of the same document keeps its id
    chunk: Chunk
    embedding: list[float]
    document_id: str | None
    text: str  # the chunk's text, for keyword search


class VectorIOProvider(Protocol):
    async def register_vector_db(self, db: VectorDB) -> VectorDB:
        """Opens (or creates) the db's storage; must keep existing data (called at every start)."""
        ...

    async def unregister_vector_db(self, db: VectorDB) -> None:
        """Drops the db and its data."""
        ...

    async def upsert(self, db: VectorDB, items: list[StoredChunk]) -> None: ...

    async def delete_document(self, db: VectorDB, document_id: str) -> None: ...

    async def query(self, db: VectorDB, embedding: list[float], k: int) -> list[tuple[Chunk, float]]:
        """The k nearest chunks with cosine similarity (higher is closer), best first."""
        ...

    async def keyword_query(self, db: VectorDB, text: str, k: int) -> list[tuple[Chunk, float]]:
        """The k chunks that best match the query's words, with BM25 scores (k1 1.2, b 0.75; above 0,
        higher is better), best first. Chunks sharing no word with the query are left out. Hybrid
        search is not the provider's business: the stack fuses this list with `query`'s."""
        ...


def storage_name(identifier: str, prefix: str = "vdb") -> str:
    """A name that storage engines accept (letters, digits, _), unique per identifier."""
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9]+", "_", identifier).strip("_")[:40] or "db"
    return f"{prefix}_{slug}_{hashlib.sha256(identifier.encode()).hexdigest()[:10]}"
