"""What the adapter knows of the engine's models: the listing model discovery reads, the check that
a request's model is one the engine serves, and the 503 while the engine cannot be reached.

The engine's listing (GET /models) is remembered from its last answer (at registration, a health
check, a refresh). A request for a model missing from it is refused with a 404 naming the provider,
the URL and what the engine does serve, before anything is sent: some engines (llama.cpp's servers)
answer any name with their default model, which would be a wrong answer instead of an error. A name
missing from the listing is looked up again (at most every `_RECHECK_S`), and an old listing is
renewed in the background, so an engine that loads a model is believed within seconds. An engine
that refuses connections makes the listing unknown: after it comes back, the first request asks
again (an engine restarted with other models is caught there). Requests that bring their own key
(X-LlamaStack-Provider-Data) are not checked: another key may see other models.

Discovery registers what `allowed_models` lets through, each as an llm unless it is an embedding
model: one named in `embedding_models`, or one the listing calls so (Together's "type") or whose id
names one, if an embedding request to it answers (which also gives its dimension). Engines list no
model's type reliably, so a guess is checked rather than trusted; each model is checked once.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import time
from typing import Any

from llamastack.stack.apis.models import Model, ModelType
from llamastack.stack.boundary import Failure
from llamastack.stack.errors import NotFoundError, ServerBusyError, StackError
from llamastack.stack.routing.model_discovery import ServedModel

from . import transport
from .config import RemoteEngineConfig

log = logging.getLogger(__name__)

_RECHECK_S = 2.0  # a name missing from the listing is looked up again at most this often
_UNLISTABLE_RECHECK_S = 60.0  # after an engine answered the listing with an error (no GET /models)
_STALE_S = 60.0  # a listing older than this is renewed (in the background) at the next request
_UNREACHABLE_RETRY_AFTER_S = 2
# Ids of well-known embedding models (text-embedding-3-small, nomic-embed-text, BAAI/bge-m3,
# intfloat/e5-large-v2, thenlper/gte-base, all-MiniLM-L6-v2, all-mpnet-base-v2, ...).
_EMBEDDING_ID = re.compile(r"embed|(?:^|[/_.:-])(?:bge|e5|gte|minilm|mpnet)(?:[/_.:-]|$)", re.IGNORECASE)
# A listing's "type" of a model (Together's): what discovery registers it as; other types (image,
# audio, rerank, ...) are not served through chat or embeddings and are left out.
_LISTED_TYPES = {
    "chat": ModelType.llm,
    "language": ModelType.llm,
    "code": ModelType.llm,
    "moderation": ModelType.llm,
    "embedding": ModelType.embedding,
}


class ServedNames:
    """The engine's model ids at its last listing (None: not known)."""

    def __init__(self) -> None:
        self.names: frozenset[str] | None = None
        self.listed_at = 0.0
        self.next_ask_at = float("-inf")  # when a request may list the engine's models again
        self.renewing: asyncio.Task[None] | None = None

    def update(self, names: frozenset[str]) -> None:
        self.names = names
        self.listed_at = time.monotonic()
        self.next_ask_at = self.listed_at + _RECHECK_S

    def forget(self) -> None:
        self.names = None


class EngineModels:
    """Mixed into the adapter, which provides the attributes and `_list_models` below."""

    config: RemoteEngineConfig
    service: str
    url: str
    _served: ServedNames
    _described: dict[str, ServedModel]  # what discovery was told of each model, kept: checked once

    async def _list_models(self, *, retries: bool = True) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    async def _embedding_dimension(self, name: str) -> int:
        """The length of the vector `name` answers for one input; a StackError if it does not embed."""
        raise NotImplementedError

    # --- model discovery (stack/routing/model_discovery.py) ---------------------------------------

    @property
    def refresh_models(self) -> bool:
        return self.config.refresh_models

    @property
    def refresh_interval_s(self) -> float:
        return self.config.refresh_interval_s

    async def list_served_models(self) -> dict[str, ServedModel]:
        # With the adapter's retries and longer wait: a busy engine (llama_cpp.server answers one
        # request at a time) is not taken for a gone one.
        listed = await self._list_models()
        allowed = self.config.allowed_models
        served: dict[str, ServedModel] = {}
        checks: dict[str, asyncio.Future[ServedModel | None]] = {}
        for name, entry in listed.items():
            if allowed is not None and not _matches(name, allowed):
                continue
            if (known := self._described.get(name)) is not None:
                served[name] = known
                continue
            metadata: dict[str, Any] = {}
            # vLLM says how long its context is as max_model_len, Together and Fireworks as context_length.
            for field in ("max_model_len", "context_length"):
                if isinstance(context := entry.get(field), int) and not isinstance(context, bool):
                    metadata["context_length"] = context
                    break
            listed_type = entry.get("type")
            kind = _LISTED_TYPES.get(listed_type) if isinstance(listed_type, str) else ModelType.llm
            if kind is None:
                continue
            named = _matches(name, self.config.embedding_models)
            if named or kind == ModelType.embedding or _EMBEDDING_ID.search(name):
                checks[name] = asyncio.ensure_future(self._checked_embedding(name, metadata, named=named))
            else:
                served[name] = self._described[name] = ServedModel(ModelType.llm, metadata)
        for name, check in checks.items():  # at once: an engine with many embedding models starts quickly
            if (described := await check) is not None:
                served[name] = described
        return served

    async def _checked_embedding(
        self, name: str, metadata: dict[str, Any], *, named: bool
    ) -> ServedModel | None:
        """What an embedding request to `name` says it is; None (left for the next listing) when the
        engine was too busy or unreachable to tell."""
        try:
            dimension = await self._embedding_dimension(name)
        except ServerBusyError as exc:
            log.info("%s: '%s' is checked at the next listing: %s", self.service, name, exc.detail)
            return None
        except StackError as exc:
            if named:  # the operator says it embeds: registered so, without a dimension
                log.warning(
                    "%s: could not read the embedding dimension of '%s' (vector databases on it need "
                    "embedding_dimension given): %s",
                    self.service,
                    name,
                    exc.detail,
                )
                described = ServedModel(ModelType.embedding, metadata)
                self._described[name] = described
                return described
            log.info(
                "%s: '%s' did not answer an embedding request (%s); registered as an llm (list it in "
                "embedding_models if it embeds).",
                self.service,
                name,
                exc.detail,
            )
            described = ServedModel(ModelType.llm, metadata)
        else:
            described = ServedModel(ModelType.embedding, {**metadata, "embedding_dimension": dimension})
        self._described[name] = described
        return described

    # --- requests ---------------------------------------------------------------------------------

    def _listed(self, served: dict[str, dict[str, Any]]) -> None:
        self._served.update(frozenset(served))

    def _serves(self, name: str, names: frozenset[str]) -> bool:
        # llama.cpp's servers serve their one model under whatever name a request gives.
        return name in names or (self.config.single_model and len(names) == 1)

    async def _check_served(self, model: Model, name: str) -> None:
        """Refuses (404) a model the engine's listing lacks, before sending the request."""
        served = self._served
        names = served.names
        if names is not None and self._serves(name, names):
            if time.monotonic() - served.listed_at > _STALE_S and served.renewing is None:
                served.renewing = asyncio.get_running_loop().create_task(self._renew())
            return
        now = time.monotonic()
        if now >= served.next_ask_at:
            served.next_ask_at = now + _RECHECK_S
            try:
                names = frozenset(await self._list_models(retries=False))
            except StackError as exc:
                if not isinstance(exc, ServerBusyError):  # it answered, but lists nothing: ask rarely
                    served.next_ask_at = now + _UNLISTABLE_RECHECK_S
                return  # the request itself says what is wrong
        if names is None or self._serves(name, names):
            return
        listed = ", ".join(sorted(names)[:20]) or "none"
        raise NotFoundError(
            f"{self.service} at {self.url} does not serve model '{name}' (it serves: {listed}); the "
            f"engine's models changed since model '{model.identifier}' was registered, or it was registered "
            "while the engine was down. Serve it on the engine again, or register the model with a "
            "provider_model_id the engine lists."
        )

    async def _renew(self) -> None:
        try:
            await self._list_models(retries=False)
        except StackError:
            pass  # the next request that needs the listing asks again
        finally:
            self._served.renewing = None

    def _engine_failure(self, exc: BaseException) -> StackError | Failure | None:
        """The Boundary rule for transport errors: an engine that refuses connections is 503."""
        failure = transport.failure(exc)
        if failure is None or failure.kind != "connect":
            return failure
        self._served.forget()  # it may come back serving other models
        return ServerBusyError(
            f"{self.service} could not reach {self.url}: {failure.reason}. Check that the engine is "
            f"running and that its URL ({self.config.url_env}) is right; requests to its models fail until "
            "it answers.",
            _UNREACHABLE_RETRY_AFTER_S,
        )


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
