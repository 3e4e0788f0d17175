"""Documents given by URL go through the stack's outbound policy: internal addresses are refused
(at every hop) unless the server allows them; allow_private_urls widens it for documents only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llamastack.providers.tool_runtime.rag import get_provider_impl
from llamastack.providers.tool_runtime.rag.config import RagRuntimeConfig
from llamastack.providers.tool_runtime.rag.provider import RagRuntime
from llamastack.stack.apis.vector_io import RAGDocument
from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.errors import BadRequestError
from llamastack.stack.outbound import OutboundConfig, OutboundPolicy

from conftest import LoopbackWeb


@pytest.fixture(scope="module")
def page() -> Iterator[str]:
    web = LoopbackWeb({"/page.txt": (200, {"Content-Type": "text/plain"}, b"Llamas live in the Andes.")})
    yield f"{web.url}/page.txt"
    web.close()


def _offline_rag(config: RagRuntimeConfig, outbound: OutboundPolicy | None = None) -> RagRuntime:
    """A RAG runtime that only loads documents: no vector_io or inference behind it."""
    return RagRuntime(config, vector_io=None, vector_dbs=None, inference=None, outbound=outbound)  # type: ignore[arg-type]


def _doc(url: str) -> RAGDocument:
    return RAGDocument(document_id="d", content={"uri": url})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/doc.txt", "http://localhost/x", "http://169.254.169.254/latest"]
)
async def test_internal_urls_are_refused(url: str) -> None:
    rag = RagRuntime(
        RagRuntimeConfig(allow_private_urls=False), vector_io=None, vector_dbs=None, inference=None
    )
    with pytest.raises(BadRequestError, match="not a public address"):
        await rag._load(_doc(url))


async def test_refused_by_default_naming_the_document_and_the_setting(page: str) -> None:
    rag = _offline_rag(RagRuntimeConfig())
    refused = r"^Document 'd': Refused to connect to 127\.0\.0\.1 port"
    with pytest.raises(BadRequestError, match=refused) as info:
        await rag._load(_doc(page))
    assert "server.outbound.allow_hosts" in info.value.detail


async def test_the_stack_policy_reaches_the_provider(page: str) -> None:
    port = page.split(":")[2].split("/")[0]
    unused: Any = object()  # reading a document needs neither vector_io nor inference
    deps = ProviderDeps(
        vector_io=unused,
        vector_dbs=unused,
        inference=unused,
        outbound=OutboundPolicy(OutboundConfig(allow_hosts=[f"127.0.0.1:{port}"])),
    )
    rag = await get_provider_impl(RagRuntimeConfig(), deps)
    text, source = await rag._load(_doc(page))
    assert (text, source) == ("Llamas live in the Andes.", page)


async def test_allow_private_urls_widens_for_documents_but_not_to_metadata(page: str) -> None:
    strict = OutboundPolicy()
    config = RagRuntimeConfig(allow_private_urls=True)
    rag = _offline_rag(config, outbound=strict)
    text, _ = await rag._load(_doc(page))
    assert text == "Llamas live in the Andes."
    with pytest.raises(BadRequestError, match="cloud metadata"):
        await rag._load(_doc("http://169.254.169.254/latest/meta-data/"))
    assert strict.config.allow_private_networks is False  # the stack's policy itself is unchanged


async def test_inline_text_is_unaffected() -> None:
    rag = RagRuntime(
        RagRuntimeConfig(allow_private_urls=False), vector_io=None, vector_dbs=None, inference=None
    )
    text, _ = await rag._load(RAGDocument(document_id="d", content="plain words"))
    assert text == "plain words"
