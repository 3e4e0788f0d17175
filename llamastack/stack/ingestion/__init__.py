"""Document ingestion, shared by the RAG tool and vector stores: document -> text -> chunks -> VectorIO.

    fetch.py     http(s) URLs through the outbound policy, with a deadline and a size cap
    mime.py      content type (declared, else sniffed) and charset
    extract.py   plain text from PDF, HTML, JSON and text bytes
    load.py      a RAG document's content (inline text, items, data and http(s) URLs) as text
    chunk.py     token-aware chunking (Llama 3 tokens) and token counting
    pipeline.py  the whole path, ending in `VectorIO.insert_chunks`

CPU work (parsing, chunking, token counting, the tokenizer's first load) runs in worker threads,
never on the event loop. Failures are `DocumentError`s (stack/errors.py), 4xx with the document named.
"""

from ..errors import DocumentError, DocumentFetchError, DocumentTooLargeError, UnsupportedDocumentError
from .chunk import TextChunk, chunk_text, count_tokens, default_tokenizer
from .extract import extract, extract_text
from .load import LoadedDocument, load_document
from .mime import guess_mime_type
from .pipeline import (
    Chunking,
    DocumentLimits,
    PreparedFile,
    document_chunks,
    file_text,
    insert_documents,
    prepare_file,
    read_document,
    replace_document,
)

__all__ = [
    "Chunking",
    "DocumentError",
    "DocumentFetchError",
    "DocumentLimits",
    "DocumentTooLargeError",
    "LoadedDocument",
    "PreparedFile",
    "TextChunk",
    "UnsupportedDocumentError",
    "chunk_text",
    "count_tokens",
    "default_tokenizer",
    "document_chunks",
    "extract",
    "extract_text",
    "file_text",
    "guess_mime_type",
    "insert_documents",
    "load_document",
    "prepare_file",
    "read_document",
    "replace_document",
]
