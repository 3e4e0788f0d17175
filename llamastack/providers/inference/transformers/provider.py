"""The inline::transformers inference provider: text models (AutoModelForCausalLM) and Llama 3.2
Vision (MllamaForConditionalGeneration + AutoProcessor), from a folder, a GGUF file or a hub id."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from llamastack.stack.apis.inference.core import (
    ChatRequest,
    CompletionRequest,
    EmbeddingResult,
)
from llamastack.stack.apis.models import Model, ModelType
from llamastack.stack.errors import BadRequestError, UnsupportedError
from llamastack.stack.library_imports import library_imports
from llamastack.stack.outbound import OutboundPolicy

from ...utils.images import load_image
from ...utils.json_schema_grammar import check_enforceable, closed, tool_call_schema
from ...utils.library_loading import hf_loading
from ...utils.local_generation import LocalGeneration, Prepared
from ...utils.tool_prompts import builtin_tools_for, generic_tool_messages, llama3_version, render_llama3
from .config import TransformersConfig
from .engine import Prompt, TransformersModel
from .grammar import Grammars
from .loading import ModelSource, load, model_source
from .prompt import IMAGE_TOKEN, apply_template, last_image_only, llama3_vision_prompt, template_messages


class TransformersInference(LocalGeneration):
    supported_model_types = (ModelType.llm,)

    def __init__(self, config: TransformersConfig, outbound: OutboundPolicy | None = None) -> None:
        self.config = config
        self.outbound = outbound or OutboundPolicy()
        self._by_source: dict[tuple[str, str | None], _Served] = {}
        self._refs: dict[tuple[str, str | None], set[str]] = {}
        self._models: dict[str, _Served] = {}

    async def health(self) -> dict[str, str]:
        return {"status": "OK"}

    async def shutdown(self) -> None:
        for served in self._by_source.values():
            await asyncio.to_thread(served.engine.close)
        self._by_source.clear()
        self._models.clear()

    async def register_model(self, model: Model) -> Model:
        if model.model_type != ModelType.llm:
            raise BadRequestError("inline::transformers serves llm models only; use an embeddings provider.")
        gguf = model.metadata.get("gguf_file")
        source = model_source(
            model.provider_resource_id or model.identifier, gguf if isinstance(gguf, str) else None
        )
        served = self._by_source.get(source.key)
        if served is None:
            loaded = await asyncio.to_thread(_load_in_turn, source, self.config)
            engine = TransformersModel(
                loaded, max_queued=self.config.max_queued_requests, name=source.location.rsplit("/", 1)[-1]
            )
            served = _Served(source, engine, Grammars(loaded.tokenizer, engine.vocab_size, engine.end_ids))
            self._by_source[source.key] = served
        self._refs.setdefault(source.key, set()).add(model.identifier)
        self._models[model.identifier] = served
        loaded = served.engine.loaded
        metadata = {
            "context_length": served.engine.n_ctx,
            "architecture": loaded.architecture,
            "vision": loaded.vision,
            "device": loaded.placement.device,
            "dtype": str(loaded.placement.dtype).removeprefix("torch."),
        }
        if source.gguf_file:
            metadata["gguf_file"] = source.gguf_file
        return model.model_copy(update={"metadata": {**model.metadata, **metadata}})

    async def unregister_model(self, model: Model) -> None:
        served = self._models.pop(model.identifier, None)
        if served is None:
            return
        refs = self._refs.get(served.source.key, set())
        refs.discard(model.identifier)
        if not refs:
            self._refs.pop(served.source.key, None)
            self._by_source.pop(served.source.key, None)
            await asyncio.to_thread(served.engine.close)

    # --- prompts --------------------------------------------------------------------------------

    async def _vision_prompt(self, served: _Served, model: Model, request: ChatRequest) -> Prompt:
        """Mllama's input: the last image only, system text folded into the first user turn."""
        messages = request.messages
        if request.tools is not None and request.tools.active:
            messages = generic_tool_messages(messages, request.tools)  # keeps the images
        turns = last_image_only(messages)
        messages = turns.messages
        processor = served.engine.loaded.processor
        image = None
        if turns.image is not None:
            where = f"messages[{_message_index(request, turns.image)}]"
            image = await load_image(
                turns.image,
                where,
                self.outbound,
                max_bytes=self.config.max_image_bytes,
                timeout_s=self.config.image_fetch_timeout_s,
            )
        if _is_guard(model):
            text = llama3_vision_prompt(messages, turns.image_turn)
        else:
            text = await asyncio.to_thread(
                apply_template, processor, template_messages(messages, turns.image_turn), model.identifier
            )
        expected = 0 if image is None else 1
        if text.count(IMAGE_TOKEN) != expected:  # the token typed in a message's text
            raise BadRequestError(
                f"The messages contain the text {IMAGE_TOKEN}, which marks where an image goes; send "
                "images as image content parts instead."
            )
        return await asyncio.to_thread(_processed, processor, text, image)

    async def _prepare_chat(self, model: Model, request: ChatRequest) -> Prepared:
        served = self._models[model.identifier]
        engine = served.engine
        has_images = any(m.images for m in request.messages)
        tools = request.tools
        version = llama3_version(
            model.metadata.get("llama_model"), model.identifier, model.provider_resource_id
        )
        builtin = builtin_tools_for(version, tools.tools) if tools is not None and tools.active else []
        if has_images and not engine.loaded.vision:
            raise UnsupportedError(
                f"Model '{model.identifier}' takes text only; send images to a vision model "
                "(e.g. Llama-3.2-11B-Vision-Instruct)."
            )
        uses_tools = (tools is not None and tools.active) or any(
            m.role == "tool" or m.tool_calls for m in request.messages
        )
        tokenizer = engine.tokenizer
        if has_images or (engine.loaded.vision and _is_guard(model)):
            prompt = await self._vision_prompt(served, model, request)
        elif _is_guard(model):  # Meta's format: the model's own template would wrap its policy again
            prompt = await asyncio.to_thread(
                _tokenized, tokenizer, render_llama3(request.messages, None, "3.2")
            )
        elif version and uses_tools:
            text = await asyncio.to_thread(render_llama3, request.messages, tools, version)
            prompt = await asyncio.to_thread(_tokenized, tokenizer, text)
        else:
            messages = generic_tool_messages(request.messages, tools) if uses_tools else request.messages
            owner = engine.loaded.processor or tokenizer  # a vision model's template is the processor's
            text = await asyncio.to_thread(
                apply_template, owner, template_messages(messages), model.identifier
            )
            prompt = await asyncio.to_thread(_tokenized, tokenizer, text)
        budget = engine.check_context(prompt.n_tokens, request.sampling.max_tokens)
        engine.check_tokens(request.sampling)
        schema = request.json_schema
        if schema is not None:
            check_enforceable(schema, "response_format")
            schema = closed(schema)
        elif tools is not None and tools.forced and request.grammar is None:
            schema = tool_call_schema(tools.tools, None if tools.choice == "required" else tools.choice)
        grammar = await self._grammar(served, schema, request.grammar)
        return Prepared(engine, prompt, budget, list(request.sampling.stop), grammar, builtin, version)

    async def _grammar(self, served: _Served, schema: dict[str, Any] | None, gbnf: str | None) -> Any:
        if schema is None and gbnf is None:
            return None
        return await asyncio.to_thread(served.grammars.compile, schema, gbnf)

    async def _prepare_completion(self, model: Model, request: CompletionRequest) -> Prepared:
        served = self._models[model.identifier]
        engine = served.engine
        prompt = await asyncio.to_thread(_tokenized, engine.tokenizer, request.prompt, True)
        budget = engine.check_context(prompt.n_tokens, request.sampling.max_tokens)
        engine.check_tokens(request.sampling)
        schema = request.json_schema
        if schema is not None:
            check_enforceable(schema, "response_format")
            schema = closed(schema)
        grammar = await self._grammar(served, schema, request.grammar)
        return Prepared(engine, prompt, budget, list(request.sampling.stop), grammar)

    async def embed(self, model: Model, texts: list[str], *, truncate: Any = None) -> EmbeddingResult:
        raise UnsupportedError(
            "inline::transformers does not serve embeddings; use inline::sentence-transformers."
        )


@dataclass(frozen=True, slots=True)
class _Served:
    source: ModelSource
    engine: TransformersModel
    grammars: Grammars


def _load_in_turn(source: ModelSource, config: TransformersConfig) -> Any:
    with hf_loading:
        loaded = load(source, config)
        # Names generation resolves later, on its worker thread, while another model may be loading.
        with library_imports:
            from transformers import LogitsProcessorList, StoppingCriteriaList  # noqa: F401

        return loaded


def _is_guard(model: Model) -> bool:
    names = (model.identifier, model.provider_resource_id or "", str(model.metadata.get("llama_model", "")))
    return any("guard" in name.lower() for name in names)


def _message_index(request: ChatRequest, image: str) -> int:
    for i in range(len(request.messages) - 1, -1, -1):
        if image in (request.messages[i].images or []):
            return i
    return 0


def _tokenized(tokenizer: Any, text: str, add_special: bool = False) -> Prompt:
    """A rendered chat prompt already holds its special tokens (BOS included); a completion prompt
    gets the tokenizer's own (e.g. BOS)."""
    encoded = tokenizer(text, add_special_tokens=add_special, return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    return Prompt(inputs, int(encoded["input_ids"].shape[1]))


def _processed(processor: Any, text: str, image: Any) -> Prompt:
    kwargs: dict[str, Any] = {"text": text, "add_special_tokens": False, "return_tensors": "pt"}
    if image is not None:
        kwargs["images"] = [image]
    try:
        encoded = processor(**kwargs)
    except ValueError as exc:  # e.g. the number of image tokens and images differ
        raise BadRequestError(f"The vision processor rejected the input: {exc}") from None
    inputs = dict(encoded)
    shape = tuple(inputs["pixel_values"].shape) if "pixel_values" in inputs else None
    return Prompt(inputs, int(inputs["input_ids"].shape[1]), shape)
