"""Model discovery: the models an inference provider's engine lists become registered models.

A provider that can list what its engine serves (the remote engines) takes part; with its
``refresh_models`` on, its engine is asked at start and then every ``refresh_interval_s``, and
``POST /v1/models:refresh`` asks on demand whatever that setting says. Each model the engine lists
is registered under the engine's own id (``<provider_id>/<id>`` when that id is taken), with
``provider_resource_id`` set to it, the type the provider says it has (llm or embedding, with its
``embedding_dimension``) and ``metadata.discovered`` true, unless a registered model of that
provider already maps to it. A discovered model the engine no longer lists is unregistered;
models registered by hand or in the run config never are (their requests get the engine's error).

An engine that does not answer stops nothing: the log says which one, its discovered models stay
as they were, and it is asked again soon (backing off up to ``_MAX_DOWN_WAIT_S``) until it answers.
Discovered models live in memory: every replica asks its engines itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..apis.models import Model, ModelType, ProviderModelsRefresh
from ..errors import BadRequestError, ProviderNotFoundError, StackError
from .models import ModelsTable

log = logging.getLogger(__name__)

_FIRST_DOWN_WAIT_S = 1.0
_MAX_DOWN_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What a provider says of one model its engine serves."""

    model_type: ModelType = ModelType.llm
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. context_length, embedding_dimension


@runtime_checkable
class ListsServedModels(Protocol):
    """An inference provider that can say which models its engine serves."""

    @property
    def refresh_models(self) -> bool: ...

    @property
    def refresh_interval_s(self) -> float: ...

    async def list_served_models(self) -> dict[str, ServedModel]:
        """The engine's model ids (those the provider is set to serve), each with its type and what
        the engine said of it; a StackError naming the engine when it cannot be asked."""
        ...


class ModelDiscovery:
    def __init__(self, models: ModelsTable) -> None:
        self.models = models
        self.listers: dict[str, ListsServedModels] = {
            pid: impl for pid, impl in models.providers.items() if isinstance(impl, ListsServedModels)
        }
        self._locks = {pid: asyncio.Lock() for pid in self.listers}
        self._unreachable: set[str] = set()  # providers whose last listing failed
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Asks the engines of providers with refresh_models on (all at once), then keeps asking."""
        automatic = [pid for pid, impl in self.listers.items() if impl.refresh_models]
        if not automatic:
            return
        await asyncio.gather(*(self.refresh_provider(pid) for pid in automatic))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keep_fresh(pid), name=f"model-refresh:{pid}") for pid in automatic
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def refresh(self, provider_id: str | None = None) -> list[ProviderModelsRefresh]:
        """Asks one provider's engine (or every listing provider's) now; what changed."""
        if provider_id is None:
            return list(await asyncio.gather(*(self.refresh_provider(pid) for pid in self.listers)))
        if provider_id not in self.models.providers:
            raise ProviderNotFoundError(provider_id, list(self.models.providers))
        if provider_id not in self.listers:
            raise BadRequestError(
                f"Inference provider '{provider_id}' cannot list the models it serves (only remote engines "
                "can); register its models with POST /v1/models."
            )
        return [await self.refresh_provider(provider_id)]

    async def refresh_provider(self, provider_id: str) -> ProviderModelsRefresh:
        async with self._locks[provider_id]:
            try:
                served = await self.listers[provider_id].list_served_models()
            except StackError as exc:
                return self._failed(provider_id, exc.detail)
            except Exception as exc:  # a provider's bug must not stop the refresh of the others
                log.exception("Provider '%s' failed listing its models", provider_id)
                return self._failed(
                    provider_id, f"listing failed with {type(exc).__name__}; see the server log"
                )
            if provider_id in self._unreachable:
                self._unreachable.discard(provider_id)
                log.info(
                    "Provider '%s' answers again: its engine lists %d model(s).", provider_id, len(served)
                )
            try:
                return await self._apply(provider_id, served)
            except StackError as exc:  # e.g. the database is unreachable: the next refresh tries again
                log.warning(
                    "Provider '%s': could not update its discovered models: %s", provider_id, exc.detail
                )
                return ProviderModelsRefresh(provider_id=provider_id, status="Error", message=exc.detail)

    def _failed(self, provider_id: str, message: str) -> ProviderModelsRefresh:
        if provider_id not in self._unreachable:  # once per outage, not at every retry
            self._unreachable.add(provider_id)
            log.warning(
                "Provider '%s': could not list its engine's models: %s Its discovered models stay as they "
                "were; the engine is asked again until it answers.",
                provider_id,
                message if message.endswith(".") else message + ".",
            )
        return ProviderModelsRefresh(provider_id=provider_id, status="Error", message=message)

    async def _apply(self, provider_id: str, served: dict[str, ServedModel]) -> ProviderModelsRefresh:
        table = self.models.table
        own = {i: m for i, m in table.snapshot().items() if m.provider_id == provider_id}
        discovered = {i: m for i, m in own.items() if table.is_discovered(i)}
        mapped = {m.provider_resource_id or i for i, m in own.items() if i not in discovered}
        removed, unchanged = [], []
        for ident, model in sorted(discovered.items()):
            name = model.provider_resource_id or ident
            if name in served:
                unchanged.append(ident)
                mapped.add(name)
            elif await table.drop_discovered(ident):
                removed.append(ident)
                log.info("Model '%s' is no longer listed by provider '%s': unregistered.", ident, provider_id)
        added = []
        for name in sorted(set(served) - mapped):
            for ident in (name, f"{provider_id}/{name}"):
                model = Model(
                    identifier=ident,
                    provider_id=provider_id,
                    provider_resource_id=name,
                    model_type=served[name].model_type,
                    metadata={**served[name].metadata, "discovered": True},
                )
                if await table.add_discovered(model):
                    added.append(ident)
                    log.info(
                        "Model '%s' discovered on provider '%s' (its id: '%s').", ident, provider_id, name
                    )
                    break
            else:
                log.info(
                    "Provider '%s' lists model '%s', whose ids are taken: not registered.", provider_id, name
                )
        return ProviderModelsRefresh(
            provider_id=provider_id,
            status="OK",
            served=sorted(served),
            added=added,
            removed=removed,
            unchanged=unchanged,
        )

    async def _keep_fresh(self, provider_id: str) -> None:
        interval = self.listers[provider_id].refresh_interval_s
        down_wait = _FIRST_DOWN_WAIT_S
        while True:
            if provider_id in self._unreachable:  # soon, so a restarted engine is back in seconds
                await asyncio.sleep(min(down_wait, interval))
                down_wait = min(down_wait * 2, _MAX_DOWN_WAIT_S)
            else:
                await asyncio.sleep(interval)
                down_wait = _FIRST_DOWN_WAIT_S
            await self.refresh_provider(provider_id)
