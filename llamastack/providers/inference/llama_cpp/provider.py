"""The inline::llama-cpp inference provider."""

from __future__ import annotations

import asyncio
from pathlib import Path

from llamastack.stack.apis.inference.core import (
    ChatRequest,
    CompletionRequest,
    EmbeddingResult,
)
from llamastack.stack.apis.models import Model, ModelType
from llamastack.stack.errors import BadRequestError, UnsupportedError
from llamastack.stack.model_paths import resolve_model_path

from ...utils.json_schema_grammar import check_enforceable, closed, tool_call_schema
from ...utils.local_generation import LocalGeneration, Prepared
from ...utils.tool_prompts import builtin_tools_for, generic_tool_messages, llama3_version, render_llama3
from .config import LlamaCppConfig
from .engine import LlamaCppModel, RenderedChat


class LlamaCppInference(LocalGeneration):
    supported_model_types = (ModelType.llm,)

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self._by_path: dict[Path, LlamaCppModel] = {}
        self._refs: dict[Path, set[str]] = {}
        self._models: dict[str, LlamaCppModel] = {}

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

    async def _prepare_chat(self, model: Model, request: ChatRequest) -> Prepared:
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
        return Prepared(engine, tokens, budget, stops, grammar, builtin, version)

    async def _prepare_completion(self, model: Model, request: CompletionRequest) -> Prepared:
        engine = self._engine(model)
        tokens = engine.completion_prompt(request.prompt)
        budget = engine.check_context(len(tokens), request.sampling.max_tokens)
        engine.check_tokens(request.sampling)
        schema = request.json_schema
        if schema is not None:
            check_enforceable(schema, "response_format")
            schema = closed(schema)
        grammar = await engine.grammar_for(schema, request.grammar)
        return Prepared(engine, tokens, budget, list(request.sampling.stop), grammar)

    async def embed(self, model: Model, texts: list[str], *, truncate=None) -> EmbeddingResult:
        raise UnsupportedError("inline::llama-cpp does not serve embeddings.")


def _render_generic(engine: LlamaCppModel, request: ChatRequest, uses_tools: bool) -> RenderedChat:
    messages = generic_tool_messages(request.messages, request.tools) if uses_tools else request.messages
    return engine.render_chat(messages)
