"""Documents given by URL: with allow_private_urls off, internal addresses are refused (at every hop)."""

from __future__ import annotations

import pytest

from llamastack.providers.tool_runtime.rag.config import RagRuntimeConfig
from llamastack.providers.tool_runtime.rag.provider import RagRuntime
from llamastack.stack.apis.vector_io import RAGDocument
from llamastack.stack.errors import BadRequestError


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/doc.txt", "http://localhost/x", "http://169.254.169.254/latest"]
)
async def test_internal_urls_are_refused(url: str) -> None:
    rag = RagRuntime(RagRuntimeConfig(allow_private_urls=False), vector_io=None, inference=None)
    with pytest.raises(BadRequestError, match="not a public address"):
        await rag._load(RAGDocument(document_id="d", content={"uri": url}))


async def test_inline_text_is_unaffected() -> None:
    rag = RagRuntime(RagRuntimeConfig(allow_private_urls=False), vector_io=None, inference=None)
    text, _ = await rag._load(RAGDocument(document_id="d", content="plain words"))
    assert text == "plain words"
