"""The inline::llama-cpp inference provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamastack.stack.apis.inference.core import (
    ChatRequest,
    CompletionRequest,
    EmbeddingResult,
    GenerationChunk,
    GenerationResult,
)
from llamastack.stack.apis.models import Model, ModelType
from llamastack.stack.errors import BadRequestError, UnsupportedError
from llamastack.stack.model_paths import resolve_model_path

from ...utils.json_schema_grammar import check_enforceable, closed, tool_call_schema
from ...utils.tool_calls import apply_to_result, apply_to_stream
from ...utils.tool_prompts import builtin_tools_for, generic_tool_messages, llama3_version, render_llama3
from .config import LlamaCppConfig
from .engine import LlamaCppModel, RenderedChat


class LlamaCppInference:
    supported_model_types = (ModelType.llm,)

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self._by_path: dict[Path, LlamaCppModel] = {}
        self._refs: dict[Path, set[str]] = {}
        self._models: dict[str, LlamaCppModel] = {}
        self._loading: dict[Path, asyncio.Lock] = {}

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def shutdown(self) -> None:
        for engine in self._by_path.values():
            await asyncio.to_thread(engine.close)
        self._by_path.clear()
        self._models.clear()

    async def register_model(self, model: Model) -> Model:
        if model.model_type != ModelType.llm:
            raise BadRequestError("inline::llama-cpp serves llm models only; use an embeddings provider.")
        path = resolve_model_path(model.provider_resource_id or model.identifier)
        # Models are registered concurrently at start-up; two names for one file share one load.
        async with self._loading.setdefault(path, asyncio.Lock()):
            engine = self._by_path.get(path)
            if engine is None:
                try:
                    engine = await asyncio.to_thread(LlamaCppModel, path, self.config)
                except (ValueError, RuntimeError) as exc:
                    raise BadRequestError(f"Could not load GGUF model '{path}': {exc}") from None
                self._by_path[path] = engine
        self._refs.setdefault(path, set()).add(model.identifier)
        self._models[model.identifier] = engine
        return model.model_copy(update={"metadata": {**model.metadata, **engine.metadata}})

    async def unregister_model(self, model: Model) -> None:
        engine = self._models.pop(model.identifier, None)
        if engine is None:
            return
        refs = self._refs.get(engine.path, set())
        refs.discard(model.identifier)
        if not refs:
            self._refs.pop(engine.path, None)
            self._by_path.pop(engine.path, None)
            await asyncio.to_thread(engine.close)

    def _engine(self, model: Model) -> LlamaCppModel:
        return self._models[model.identifier]

    async def _prepare_chat(self, model: Model, request: ChatRequest) -> _Prepared:
        engine = self._engine(model)
        if any(m.images for m in request.messages):
            raise UnsupportedError(
                f"Model '{model.identifier}' (llama.cpp) takes text only; send images to a vision model."
            )
        tools = request.tools
        uses_tools = (tools is not None and tools.active) or any(
            m.role == "tool" or m.tool_calls for m in request.messages
        )
        version = llama3_version(
            model.metadata.get("llama_model"), model.identifier, model.provider_resource_id, engine.gguf_name
        )
        builtin = builtin_tools_for(version, tools.tools) if tools is not None and tools.active else []
        # Rendering the prompt (tool prompts, Jinja chat templates) is CPU work: off the event loop.
        if version and uses_tools:
            prompt = await asyncio.to_thread(render_llama3, request.messages, tools, version)
            tokens, template_stops = engine.raw_prompt(prompt), list[str]()
        else:
            chat = await asyncio.to_thread(_render_generic, engine, request, uses_tools)
            tokens, template_stops = engine.chat_tokens(chat)
        budget = engine.check_context(len(tokens), request.sampling.max_tokens)
        engine.check_tokens(request.sampling)
        schema = request.json_schema
        if schema is not None:
            check_enforceable(schema, "response_format")
            schema = closed(schema)
        elif tools is not None and tools.forced and request.grammar is None:
            schema = tool_call_schema(tools.tools, None if tools.choice == "required" else tools.choice)
        grammar = await engine.grammar_for(schema, request.grammar)
        stops = [*request.sampling.stop, *template_stops]
        return _Prepared(engine, tokens, budget, stops, grammar, builtin, version)

    async def _prepare_completion(self, model: Model, request: CompletionRequest) -> _Prepared:
        engine = self._engine(model)
        tokens = engine.completion_prompt(request.prompt)
        budget = engine.check_context(len(tokens), request.sampling.max_tokens)
        engine.check_tokens(request.sampling)
        schema = request.json_schema
        if schema is not None:
            check_enforceable(schema, "response_format")
            schema = closed(schema)
        grammar = await engine.grammar_for(schema, request.grammar)
        return _Prepared(engine, tokens, budget, list(request.sampling.stop), grammar, [], None)

    async def chat(self, model: Model, request: ChatRequest) -> GenerationResult:
        p = await self._prepare_chat(model, request)
        result = await p.engine.generate(
            p.tokens, p.budget, request.sampling, p.stops, p.grammar, model_id=model.identifier
        )
        if request.tools is not None and request.tools.active:
            result = apply_to_result(result, request.tools, p.builtin, llama_version=p.version)
        return result

    async def chat_stream(self, model: Model, request: ChatRequest) -> AsyncIterator[GenerationChunk]:
        # Errors in preparing come with the first chunk, which routes wait for before they answer.
        p = await self._prepare_chat(model, request)
        stream = p.engine.generate_stream(
            p.tokens, p.budget, request.sampling, p.stops, p.grammar, model_id=model.identifier
        )
        if request.tools is not None and request.tools.active:
            stream = apply_to_stream(stream, request.tools, p.builtin, llama_version=p.version)
        async with aclosing(stream):  # closing it cancels the generation
            async for chunk in stream:
                yield chunk

    async def complete(self, model: Model, request: CompletionRequest) -> GenerationResult:
        p = await self._prepare_completion(model, request)
        return await p.engine.generate(
            p.tokens, p.budget, request.sampling, p.stops, p.grammar, model_id=model.identifier
        )

    async def complete_stream(
        self, model: Model, request: CompletionRequest
    ) -> AsyncIterator[GenerationChunk]:
        p = await self._prepare_completion(model, request)
        stream = p.engine.generate_stream(
            p.tokens, p.budget, request.sampling, p.stops, p.grammar, model_id=model.identifier
        )
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk

    async def embed(self, model: Model, texts: list[str], *, truncate=None) -> EmbeddingResult:
        raise UnsupportedError("inline::llama-cpp does not serve embeddings.")


@dataclass(frozen=True, slots=True)
class _Prepared:
    engine: LlamaCppModel
    tokens: list[int]
    budget: int
    stops: list[str]
    grammar: Any
    builtin: list[str]
    version: str | None  # the Llama 3.x version, which selects the tool-call parsers


def _render_generic(engine: LlamaCppModel, request: ChatRequest, uses_tools: bool) -> RenderedChat:
    messages = generic_tool_messages(request.messages, request.tools) if uses_tools else request.messages
    return engine.render_chat(messages)
