"""Many RAG documents are prepared in one go (one worker-thread call for all of them, not a thread hop
per document): each gets the chunks it would get alone, and a bad one is named."""

from __future__ import annotations

import base64

import pytest

from llamastack.stack.apis.vector_io import RAGDocument
from llamastack.stack.ingestion import Chunking, DocumentError, DocumentLimits, document_chunks
from llamastack.stack.ingestion.pipeline import documents_chunks

CHUNKING = Chunking(size_tokens=32, overlap_tokens=4)


def _documents() -> list[RAGDocument]:
    long_text = " ".join(f"Sentence {i} is about llamas in the Andes." for i in range(40))
    data_url = "data:text/html;base64," + base64.b64encode(b"<p>Alpacas <b>hum</b>.</p>").decode()
    return [
        RAGDocument(document_id="plain", content="Llamas are pack animals.", metadata={"n": 1}),
        RAGDocument(document_id="long", content=long_text, mime_type="text/plain"),
        RAGDocument(document_id="items", content=[{"type": "text", "text": "Vicuñas are wild."}]),
        RAGDocument(document_id="html", content=data_url),
        RAGDocument(document_id="empty", content="   "),
    ]


async def test_each_document_gets_the_chunks_it_gets_alone() -> None:
    documents = _documents()
    together = await documents_chunks(documents, CHUNKING, DocumentLimits())
    alone = [await document_chunks(d, CHUNKING, DocumentLimits()) for d in documents]
    assert together == alone
    assert len(together[0]) == 1 and len(together[1]) > 3 and together[4] == []
    assert together[0][0].metadata == {
        "n": 1,
        "document_id": "plain",
        "chunk_id": together[0][0].metadata["chunk_id"],
        "chunk_index": 0,
        "token_count": together[0][0].metadata["token_count"],
    }
    assert together[3][0].content == "Alpacas hum."


async def test_a_bad_document_among_many_is_named() -> None:
    documents = _documents()
    documents.insert(2, RAGDocument(document_id="broken", content="data:text/plain;base64,@@@"))
    with pytest.raises(DocumentError) as info:
        await documents_chunks(documents, CHUNKING, DocumentLimits())
    assert info.value.detail.startswith("Document 'broken': ")
