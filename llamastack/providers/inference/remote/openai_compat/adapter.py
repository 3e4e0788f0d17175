"""One InferenceProvider over any OpenAI-compatible engine (HTTP in `transport`, bodies in `wire`).

Our model id maps to the engine's name for it
(``provider_model_id``). Failures go through the stack's Boundary (named after the provider type
and URL). Retries: only a refused connection or a 429/503 with a short Retry-After, a few times,
and never once an answer has started streaming (a timeout or a 500 may have run the generation).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Literal, TypeVar

from llamastack.stack import provider_data
from llamastack.stack.apis.inference.core import (
    ChatRequest,
    CompletionRequest,
    EmbeddingResult,
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
)
from llamastack.stack.apis.models import Model, ModelType
from llamastack.stack.boundary import Boundary, describe
from llamastack.stack.errors import (
    BadRequestError,
    NotFoundError,
    StackError,
    UnsupportedError,
    UpstreamError,
)

from ....utils.tool_calls import apply_to_result, apply_to_stream
from . import http1, prompted_tools, transport, wire
from .config import RemoteEngineConfig
from .engine_models import EngineModels, ServedModel, ServedNames
from .transport import Headers

log = logging.getLogger(__name__)

T = TypeVar("T")
_MAX_RETRY_WAIT_S = 5  # a longer Retry-After goes back to the client as 503 + Retry-After
_LIST_TIMEOUT_S = 10.0
_HEALTH_TIMEOUT_S = 3.0
# Our sampling knobs outside OpenAI's set, and the value that leaves sampling unchanged.
_NEUTRAL = {"top_k": 0, "repetition_penalty": 1.0}


def _bearer(key: str | None) -> Headers:
    return {"Authorization": f"Bearer {key}"} if key else {}


class OpenAICompatInference(EngineModels):
    # Picked by default for llm models; embedding models are served when registered with provider_id.
    supported_model_types = (ModelType.llm,)

    def __init__(self, config: RemoteEngineConfig) -> None:
        self.config = config
        self.service = config.provider_type
        self.url = config.base_url()
        self._key = (config.key() or "").strip() or None  # a key read from a file may end in a newline
        self._warned: set[str] = set()  # knobs this engine lacks, already logged
        self._served = ServedNames()  # the engine's models at its last listing
        self._described: dict[str, ServedModel] = {}
        self._client = transport.EngineClient(
            self.url or "http://unconfigured.invalid",
            _bearer(self._key),
            timeout_s=config.timeout_s,
            connect_timeout_s=config.connect_timeout_s,
            max_connections=config.max_connections,
        )

    async def health(self) -> dict[str, Any]:
        """Asks the engine (GET /models, once, briefly): "OK" with the models it serves, which can be
        registered with POST /v1/models; or "Error" saying which engine did not answer and why."""
        if not self.url:
            return {
                "status": "Error",
                "message": f"{self.service} has no engine URL ({self.config.url_env}).",
            }
        try:
            served = await self._list_models(retries=False)
        except StackError as exc:
            return {"status": "Error", "message": exc.detail}
        return {"status": "OK", "served_models": sorted(served)}

    async def shutdown(self) -> None:
        await self._client.close()

    # --- calling the engine ----------------------------------------------------------------------

    def _boundary(self, model: Model | None = None, request_key: str | None = None) -> Boundary:
        rules: dict[type[BaseException] | str, Any] = {Exception: self._engine_failure}
        if model is not None:
            name = self._name(model)

            def missing(exc: BaseException) -> StackError | None:
                if getattr(getattr(exc, "response", None), "status_code", None) != 404:
                    return None  # the usual wording for other statuses
                body = wire_body(exc)
                return NotFoundError(
                    f"{self.service} at {self.url} answered HTTP 404 for model '{name}'"
                    + (f": {body}" if body else "")
                    + f". Check that the engine serves '{name}' (GET {self.url}/models lists them) and that "
                    f"the URL ends at its OpenAI routes (usually /v1); model '{model.identifier}' maps to "
                    "it through provider_model_id."
                )

            rules[transport.EngineStatusError] = missing
        if request_key is not None:  # the caller's own key: their mistake to fix, a 400
            hint = f"Check the {self.config.provider_data_key} sent in {provider_data.HEADER}."
            credentials_error: type[StackError] = BadRequestError
        else:
            hint = f"Check api_key in the {self.service} provider config (${{env.{self.config.key_env}}})."
            credentials_error = UpstreamError
        return Boundary(
            self.service,
            self.url,
            secrets=[self._key, request_key],
            credentials="API key",
            credentials_hint=hint,
            credentials_error=credentials_error,
            rules=rules,
        )

    def _caller(self) -> tuple[Headers, str | None]:
        """Headers for this request (the key it brought, if any), and that key (None: the config's)."""
        if not self.url:  # never let the SDK fall back to its own default URL
            raise BadRequestError(
                f"{self.service} has no engine URL: set {self.config.url_env} (url in its provider config)."
            )
        name = self.config.provider_data_key
        request_key = provider_data.string_value(name) if name is not None else None
        if request_key is not None:
            if not request_key.isprintable() or not request_key.isascii():
                raise BadRequestError(
                    f"{provider_data.HEADER}: '{name}' must be printable ASCII (an API key), without "
                    "line breaks or control characters."
                )
            return _bearer(request_key), request_key
        if self.config.requires_key and not self._key:
            hint = f' or send {provider_data.HEADER}: {{"{name}": "<key>"}}' if name else ""
            raise BadRequestError(
                f"{self.service} needs an API key: set {self.config.key_env} "
                f"(api_key in its provider config){hint}."
            )
        return {}, None

    async def _send(self, call: Callable[[Headers], Awaitable[T]], model: Model | None = None) -> T:
        """`call` with the safe retries; its failure as our typed error."""
        return (await self._send_keyed(call, model))[0]

    async def _send_keyed(
        self, call: Callable[[Headers], Awaitable[T]], model: Model | None = None
    ) -> tuple[T, str | None]:
        headers, request_key = self._caller()
        if model is not None and request_key is None:
            await self._check_served(model, self._name(model))
        boundary = self._boundary(model, request_key)
        attempt = 0
        while True:
            try:
                return await call(headers), request_key
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    raise boundary.translate(exc) from None
            attempt += 1
            log.info("%s at %s: retry %d in %.1fs", self.service, self.url, attempt, delay)
            await asyncio.sleep(delay)

    def _retry_delay(self, exc: Exception, attempt: int) -> float | None:
        if attempt >= self.config.max_retries:
            return None
        failure = transport.failure(exc) or describe(exc)
        if failure is None or isinstance(exc, http1.Busy):  # a request that waited its timeout
            return None
        if failure.kind == "connect":  # nothing reached the engine: safe to send again
            return 0.2 * 2**attempt
        if failure.kind == "status" and failure.status in (429, 503):
            wait = failure.retry_after_s or 1
            return float(wait) if wait <= _MAX_RETRY_WAIT_S else None
        return None

    @staticmethod
    def _name(model: Model) -> str:
        return model.provider_resource_id or model.identifier

    # --- models ----------------------------------------------------------------------------------

    async def register_model(self, model: Model) -> Model:
        name = self._name(model)
        try:
            served = await self._list_models()
        except StackError as exc:
            # An engine that is down (or refuses the key) must not stop the server: the model is
            # served, and its requests fail with the engine's error until it answers.
            log.warning(
                "%s at %s: could not check that it serves model '%s' (%s); requests to '%s' will fail "
                "until the engine answers.",
                self.service,
                self.url,
                name,
                exc.detail,
                model.identifier,
            )
            return model
        entry = served.get(name)
        if entry is None and not (self.config.single_model and len(served) == 1):
            listed = ", ".join(sorted(served)[:20]) or "none"
            raise BadRequestError(
                f"{self.service} at {self.url} does not serve model '{name}' (it serves: {listed}). "
                f"Set provider_model_id of model '{model.identifier}' to one of these."
            )
        metadata = dict(model.metadata)
        context = (entry or {}).get("max_model_len")  # vLLM says how long its context is
        if isinstance(context, int) and "context_length" not in metadata:
            metadata["context_length"] = context
        if model.model_type == ModelType.embedding and "embedding_dimension" not in metadata:
            try:
                metadata["embedding_dimension"] = await self._embedding_dimension(name)
            except StackError as exc:
                log.warning("%s: could not read the dimension of '%s': %s", self.service, name, exc.detail)
        return model.model_copy(update={"metadata": metadata})

    async def _list_models(self, *, retries: bool = True) -> dict[str, dict[str, Any]]:
        timeout_s = _LIST_TIMEOUT_S if retries else _HEALTH_TIMEOUT_S

        async def listed(headers: Headers) -> dict[str, dict[str, Any]]:
            answer = await self._client.get_json("models", headers, timeout_s=timeout_s)
            return {m["id"]: m for m in answer["data"]}

        if not retries:
            headers, request_key = self._caller()
            async with self._boundary(request_key=request_key):
                served = await listed(headers)
        else:
            served, request_key = await self._send_keyed(listed)
        if request_key is None:  # what the provider's own key sees
            self._listed(served)
        return served

    async def unregister_model(self, model: Model) -> None:
        return None

    # --- generation ------------------------------------------------------------------------------

    def _warn_dropped(self, sampling: SamplingOptions) -> None:
        """Logs (once per knob) a sampling setting this engine has no field for: it samples without."""
        for name, neutral in _NEUTRAL.items():
            value = getattr(sampling, name)
            if value is None or value == neutral or name in self.config.sampling_extras:
                continue
            if name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "%s at %s takes no %s; requests that set it are sampled without it.",
                    self.service,
                    self.url,
                    name,
                )

    def _chat_body(self, request: ChatRequest) -> dict[str, Any]:
        self._warn_dropped(request.sampling)
        body = wire.chat_body(request, self.config.sampling_extras, self.config.schema_format)
        if request.grammar is not None:
            body[self._grammar_field()] = request.grammar
        return body

    def _completion_body(self, request: CompletionRequest) -> dict[str, Any]:
        self._warn_dropped(request.sampling)
        body = wire.completion_body(request, self.config.sampling_extras)
        if request.json_schema is not None:
            field = self.config.completion_schema_field
            if field is None:
                raise UnsupportedError(
                    f"{self.service} cannot constrain a plain completion to a JSON schema; use chat "
                    "completions with response_format instead."
                )
            body[field] = request.json_schema
        if request.grammar is not None:
            body[self._grammar_field()] = request.grammar
        return body

    def _grammar_field(self) -> str:
        if self.config.grammar_field is None:
            raise UnsupportedError(
                f"{self.service} does not take GBNF grammars; "
                "ask for a JSON schema (response_format) instead."
            )
        return self.config.grammar_field

    def _stream_options(self) -> dict[str, Any]:
        return {"stream_options": {"include_usage": True}} if self.config.stream_usage else {}

    def _prompted(self, model: Model, request: ChatRequest) -> prompted_tools.PromptedCall | None:
        if self.config.tool_calls != "prompt" or not prompted_tools.uses_tools(request):
            return None
        return prompted_tools.plan(model, request, raw_schema=self.config.completion_schema_field is not None)

    async def chat(self, model: Model, request: ChatRequest) -> GenerationResult:
        if (prompted := self._prompted(model, request)) is not None:
            if prompted.completion is not None:
                result = await self.complete(model, prompted.completion)
            else:
                assert prompted.chat is not None
                result = await self._chat(model, prompted.chat)
            if not prompted.tools.active:
                return result
            return apply_to_result(result, prompted.tools, prompted.builtin, llama_version=prompted.version)
        return await self._chat(model, request)

    async def _chat(self, model: Model, request: ChatRequest) -> GenerationResult:
        body = {"model": self._name(model), **self._chat_body(request), "stream": False}
        completion = await self._send(lambda h: self._client.post_json("chat/completions", body, h), model)
        async with self._boundary(model):  # an answer without the expected fields is the engine's fault
            return wire.chat_result(completion)

    async def chat_stream(self, model: Model, request: ChatRequest) -> AsyncIterator[GenerationChunk]:
        prompted = self._prompted(model, request)
        if prompted is None:
            async for chunk in self._chat_stream(model, request):
                yield chunk
            return
        if prompted.completion is not None:
            stream = self.complete_stream(model, prompted.completion)
        else:
            assert prompted.chat is not None
            stream = self._chat_stream(model, prompted.chat)
        if prompted.tools.active:
            stream = apply_to_stream(stream, prompted.tools, prompted.builtin, llama_version=prompted.version)
        async with aclosing(stream):  # type: ignore[type-var]
            async for chunk in stream:
                yield chunk

    async def _chat_stream(self, model: Model, request: ChatRequest) -> AsyncIterator[GenerationChunk]:
        body = {"model": self._name(model), **self._chat_body(request), "stream": True}
        body.update(self._stream_options())
        stream, key = await self._send_keyed(
            lambda h: self._client.open_stream("chat/completions", body, h), model
        )
        async for chunk in self._relay(stream, wire.StreamAssembler(chat=True), model, key):
            yield chunk

    async def complete(self, model: Model, request: CompletionRequest) -> GenerationResult:
        body = {"model": self._name(model), **self._completion_body(request), "stream": False}
        completion = await self._send(lambda h: self._client.post_json("completions", body, h), model)
        async with self._boundary(model):
            return wire.completion_result(completion)

    async def complete_stream(
        self, model: Model, request: CompletionRequest
    ) -> AsyncIterator[GenerationChunk]:
        body = {"model": self._name(model), **self._completion_body(request), "stream": True}
        body.update(self._stream_options())
        stream, key = await self._send_keyed(
            lambda h: self._client.open_stream("completions", body, h), model
        )
        async for chunk in self._relay(stream, wire.StreamAssembler(chat=False), model, key):
            yield chunk

    async def _relay(
        self,
        stream: transport.EngineStream,
        assembler: wire.StreamAssembler,
        model: Model,
        request_key: str | None,
    ) -> AsyncIterator[GenerationChunk]:
        # The answer has started: no retries from here. A stream cut short (the client went away)
        # closes the connection, which stops the engine's generation.
        try:
            async with self._boundary(model, request_key):
                async for event in stream.events():
                    chunk = assembler.feed(event)
                    if chunk is not None:
                        yield chunk
            yield assembler.final()
        finally:
            stream.close()

    async def embed(
        self, model: Model, texts: list[str], *, truncate: Literal["none", "start", "end"] | None = None
    ) -> EmbeddingResult:
        # Truncation is the engine's: each decides what to do with an input longer than its model takes.
        return await self._embed(self._name(model), texts, model)

    async def _embedding_dimension(self, name: str) -> int:
        return len((await self._embed(name, ["dimension probe"])).embeddings[0])

    async def _embed(self, name: str, texts: list[str], model: Model | None = None) -> EmbeddingResult:
        body = {"model": name, "input": texts, "encoding_format": "float"}
        answer = await self._send(lambda h: self._client.post_json("embeddings", body, h), model)
        async with self._boundary(model):
            data = sorted(answer["data"], key=lambda d: d["index"])
            usage = answer.get("usage") or {}
            vectors = [list(d["embedding"]) for d in data]
        if len(vectors) != len(texts) or not all(
            vector and all(isinstance(x, int | float) for x in vector) for vector in vectors
        ):
            # llama.cpp without pooling answers one vector per token of each input.
            raise UpstreamError(
                f"{self.service} at {self.url} did not answer one embedding vector per input for model "
                f"'{name}'. Check that the engine pools its embeddings (llama.cpp: "
                "--pooling mean, or llama_cpp.server --pooling_type 1)."
            )
        return EmbeddingResult(embeddings=vectors, prompt_tokens=usage.get("prompt_tokens") or 0)


def wire_body(exc: BaseException) -> str:
    """The start of an engine's error answer, on one line."""
    failure = describe(exc)
    return failure.body if failure is not None else ""
