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
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from llamastack.stack.apis.models import Model
from llamastack.stack.boundary import Failure
from llamastack.stack.errors import NotFoundError, ServerBusyError, StackError

from . import transport
from .config import RemoteEngineConfig

log = logging.getLogger(__name__)

_RECHECK_S = 2.0  # a name missing from the listing is looked up again at most this often
_UNLISTABLE_RECHECK_S = 60.0  # after an engine answered the listing with an error (no GET /models)
_STALE_S = 60.0  # a listing older than this is renewed (in the background) at the next request
_UNREACHABLE_RETRY_AFTER_S = 2


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

    async def _list_models(self, *, retries: bool = True) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    # --- model discovery (stack/routing/model_discovery.py) ---------------------------------------

    @property
    def refresh_models(self) -> bool:
        return self.config.refresh_models

    @property
    def refresh_interval_s(self) -> float:
        return self.config.refresh_interval_s

    async def list_served_models(self) -> dict[str, dict[str, Any]]:
        # With the adapter's retries and longer wait: a busy engine (llama_cpp.server answers one
        # request at a time) is not taken for a gone one.
        listed = await self._list_models()
        served: dict[str, dict[str, Any]] = {}
        for name, entry in listed.items():
            context = entry.get("max_model_len")  # vLLM says how long its context is
            served[name] = {"context_length": context} if isinstance(context, int) else {}
        return served

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
