"""The RAG tool: index documents into vector dbs, and build model-ready context for a query."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from llamastack.stack.apis.common import TextContentItem, content_to_text
from llamastack.stack.apis.inference.core import ChatMessage, ChatRequest, Inference, SamplingOptions
from llamastack.stack.apis.tools import ToolDef, ToolGroup, ToolInvocationResult, ToolParameter
from llamastack.stack.apis.vector_io import (
    Chunk,
    LLMRAGQueryGeneratorConfig,
    RAGDocument,
    RAGQueryConfig,
    RAGQueryResult,
    VectorDBs,
    VectorIO,
)
from llamastack.stack.errors import BadRequestError
from llamastack.stack.ingestion import Chunking, DocumentLimits, count_tokens, insert_documents, read_document
from llamastack.stack.outbound import OutboundPolicy
from llamastack.stack.ranking import search_mode

from .config import RagRuntimeConfig

log = logging.getLogger(__name__)

_HEADER = "knowledge_search tool found {n} chunks:\nBEGIN of knowledge_search tool results.\n"
_FOOTER = "END of knowledge_search tool results.\n"
# The closing line ties the results to the question, so the model reads them as support for it.
_REMINDER = (
    'The above results were retrieved to help answer the user\'s query: "{query}". '
    "Use them as supporting information only in answering this query.\n"
)
_NOTHING = 'knowledge_search tool found no chunks for the query "{query}" in vector dbs {db_ids}.\n'


KNOWLEDGE_SEARCH = ToolDef(
    name="knowledge_search",
    description="Search for information in a database.",
    parameters=[
        ToolParameter(
            name="query",
            parameter_type="string",
            description="The query to search for. Can be a natural language sentence or keywords.",
        )
    ],
)


class RagRuntime:
    """Serves the RAG API and the ``builtin::rag`` tool group (its ``knowledge_search`` tool)."""

    def __init__(
        self,
        config: RagRuntimeConfig,
        *,
        vector_io: VectorIO,
        vector_dbs: VectorDBs,
        inference: Inference,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.config = config
        self.vector_io = vector_io
        self.vector_dbs = vector_dbs
        self.inference = inference
        # Documents by URL are fetched through the stack's outbound policy; allow_private_urls widens
        # it for documents only.
        self.outbound = (outbound or OutboundPolicy()).widened(
            allow_private_networks=config.allow_private_urls
        )

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def register_toolgroup(self, group: ToolGroup) -> ToolGroup:
        return group

    async def unregister_toolgroup(self, group: ToolGroup) -> None:
        return None

    async def list_tools(self, group: ToolGroup) -> list[ToolDef]:
        return [KNOWLEDGE_SEARCH]

    async def invoke(
        self, tool_name: str, kwargs: dict[str, Any], group: ToolGroup, provider_data: dict[str, Any] | None
    ) -> ToolInvocationResult:
        if tool_name != KNOWLEDGE_SEARCH.name:
            raise BadRequestError(f"Tool group '{group.identifier}' has no tool '{tool_name}'.")
        query = kwargs.get("query")
        if not isinstance(query, str) or not query.strip():
            raise BadRequestError("knowledge_search needs a non-empty string argument 'query'.")
        # The vector dbs come from the call (agents pass their own) or from the group's args.
        db_ids = kwargs.get("vector_db_ids") or (group.args or {}).get("vector_db_ids") or []
        if isinstance(db_ids, str):
            db_ids = [db_ids]
        if not db_ids:
            raise BadRequestError(
                "knowledge_search needs vector_db_ids (in the call or the tool group's args)."
            )
        raw_config = kwargs.get("query_config") or (group.args or {}).get("query_config")
        config = RAGQueryConfig.model_validate(raw_config) if raw_config else None
        result = await self.query(query, list(db_ids), config)
        # An empty search is an answer too: the model (and a tool_execution step) needs content.
        content = result.content or [TextContentItem(text=_NOTHING.format(query=query, db_ids=list(db_ids)))]
        return ToolInvocationResult(content=content, metadata=result.metadata)

    def _limits(self) -> DocumentLimits:
        return DocumentLimits(
            outbound=self.outbound,
            max_bytes=self.config.max_document_bytes,
            fetch_timeout_s=self.config.fetch_timeout_s,
        )

    async def _load(self, document: RAGDocument) -> tuple[str, str | None]:
        """The document's text and where it came from (its URL, for documents given by URL)."""
        loaded = await read_document(document, self._limits())
        return loaded.text, loaded.source

    async def insert(
        self, documents: list[RAGDocument], vector_db_id: str, chunk_size_in_tokens: int
    ) -> None:
        await self.vector_dbs.get_vector_db(vector_db_id)  # 404 before any work
        overlap = int(chunk_size_in_tokens * self.config.chunk_overlap_ratio)
        await insert_documents(
            self.vector_io,
            vector_db_id,
            documents,
            Chunking(chunk_size_in_tokens, overlap),
            limits=self._limits(),
            batch_size=self.config.embedding_batch_size,
        )

    async def _query_text(self, content: Any, config: RAGQueryConfig) -> str:
        generator = config.query_generator_config
        if isinstance(generator, LLMRAGQueryGeneratorConfig):
            messages = content if isinstance(content, list) else [content]
            text = "\n".join(
                content_to_text(m) if not hasattr(m, "content") else content_to_text(m.content)
                for m in messages
            )
            prompt = (
                generator.template.replace("{messages}", text)
                if "{messages}" in generator.template
                else f"{generator.template}\n{text}"
            )
            result = await self.inference.chat(
                generator.model,
                ChatRequest(
                    messages=[ChatMessage("user", prompt)],
                    sampling=SamplingOptions(temperature=0.0, max_tokens=64),
                ),
            )
            return result.text.strip() or text
        if isinstance(content, list):
            return generator.separator.join(content_to_text(c) for c in content)
        return content_to_text(content)

    async def query(
        self, content: Any, vector_db_ids: list[str], config: RAGQueryConfig | None
    ) -> RAGQueryResult:
        config = config or RAGQueryConfig()
        search = {
            "max_chunks": config.max_chunks,
            "mode": search_mode(config.mode, "query_config.mode"),
            "ranker": config.ranker,
        }
        for db_id in vector_db_ids:
            await self.vector_dbs.get_vector_db(db_id)
        query = await self._query_text(content, config)
        if not query.strip():
            raise BadRequestError("content: give some text to search for.")
        hits: list[tuple[Chunk, float]] = []
        for db_id in vector_db_ids:
            response = await self.vector_io.query_chunks(db_id, query, search)
            hits += zip(response.chunks, response.scores, strict=True)
        hits.sort(key=lambda h: -h[1])
        hits = hits[: config.max_chunks]
        if not hits:
            return RAGQueryResult(content=None, metadata={"document_ids": [], "chunks": [], "scores": []})
        asked = content_to_text(content) if not isinstance(content, list) else query
        # Token counting (and, on the first query, loading the tokenizer) is CPU work: off the loop.
        pieces, kept = await asyncio.to_thread(_fit, hits, config)
        body = [_HEADER.format(n=len(kept)), *pieces, _FOOTER, _REMINDER.format(query=asked)]
        return RAGQueryResult(
            content=[TextContentItem(text=t) for t in body],
            metadata={
                "document_ids": [c.metadata.get("document_id") for c, _ in kept],
                "chunks": [content_to_text(c.content) for c, _ in kept],
                "scores": [s for _, s in kept],
            },
        )


def _fit(
    hits: list[tuple[Chunk, float]], config: RAGQueryConfig
) -> tuple[list[str], list[tuple[Chunk, float]]]:
    """The rendered chunks that fit in max_tokens_in_context (with the header and footer), best first."""
    pieces: list[str] = []
    used = count_tokens(_HEADER.format(n=len(hits))) + count_tokens(_FOOTER)
    kept: list[tuple[Chunk, float]] = []
    for index, (chunk, score) in enumerate(hits, 1):
        metadata = {k: v for k, v in chunk.metadata.items() if k not in ("chunk_id", "token_count")}
        text = _render(config.chunk_template, index, content_to_text(chunk.content), metadata)
        cost = count_tokens(text)
        if used + cost > config.max_tokens_in_context:
            break
        used += cost
        pieces.append(text)
        kept.append((chunk, score))
    return pieces, kept


class _ChunkView:
    def __init__(self, content: str) -> None:
        self.content = content


def _render(template: str, index: int, content: str, metadata: dict[str, Any]) -> str:
    try:
        return template.format(index=index, chunk=_ChunkView(content), metadata=metadata)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise BadRequestError(
            f"query_config.chunk_template could not be filled ({exc}); it may use {{index}}, "
            "{chunk.content} and {metadata}."
        ) from None
