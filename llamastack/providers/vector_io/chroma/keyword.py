"""BM25 keyword search over a chroma collection's chunks, with bm25s.

Local chroma has no ranked full-text search: `where_document` only filters by substring or regex
(and our documents are chunk JSON), and its BM25 sparse indexes are served by Chroma Cloud only. So
each collection gets an in-memory bm25s index of its chunk texts, built on first use and rebuilt
when the collection's revision changes. Every write through this provider bumps that revision (a
record in one small side collection), so replicas sharing a chroma server see each other's writes.

Words are unicode ``\\w+`` runs, lowercased, without diacritics, Porter-stemmed, no stop words: the
same words sqlite-vec's FTS5 index (``porter unicode61 remove_diacritics 2``) sees, and the same
BM25 parameters (k1 1.2, b 0.75), so both providers rank alike.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from llamastack.stack.apis.vector_io import Chunk
from llamastack.stack.library_imports import library_imports

TOKEN_PATTERN = r"(?u)\b\w+\b"
K1, B = 1.2, 0.75


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _stemmer() -> Any:
    with library_imports:
        import Stemmer

    return Stemmer.Stemmer("porter")


@dataclass(slots=True)
class KeywordIndex:
    revision: str | None
    chunks: list[Chunk]
    retriever: Any  # bm25s.BM25, or None for an empty collection
    stemmer: Any

    @classmethod
    def build(cls, revision: str | None, chunks: list[Chunk], texts: list[str]) -> KeywordIndex:
        """Blocking: tokenises and indexes every text (run it in a thread)."""
        with library_imports:
            import bm25s

        stemmer = _stemmer()
        if not chunks:
            return cls(revision, [], None, stemmer)
        tokens = bm25s.tokenize(
            [_plain(t) for t in texts],
            token_pattern=TOKEN_PATTERN,
            stopwords=None,
            stemmer=stemmer,
            show_progress=False,
        )
        retriever = bm25s.BM25(k1=K1, b=B)
        retriever.index(tokens, show_progress=False)
        return cls(revision, chunks, retriever, stemmer)

    def search(self, text: str, k: int) -> list[tuple[Chunk, float]]:
        """Blocking: the k best chunks with a BM25 score above 0, best first."""
        with library_imports:
            import bm25s
            import numpy as np

        if self.retriever is None:
            return []
        [words] = bm25s.tokenize(
            [_plain(text)],
            token_pattern=TOKEN_PATTERN,
            stopwords=None,
            stemmer=self.stemmer,
            return_ids=False,
            show_progress=False,
        )
        if not words:
            return []
        scores = self.retriever.get_scores(list(dict.fromkeys(words)))
        k = min(k, len(scores))
        candidates = np.argpartition(-scores, k - 1)[:k]
        # Ties (equal scores) keep insertion order, so results are deterministic.
        best = sorted((int(i) for i in candidates if scores[i] > 0), key=lambda i: (-float(scores[i]), i))
        return [(self.chunks[i], float(scores[i])) for i in best]
