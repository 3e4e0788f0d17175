"""Builds the running stack from a run config: providers in dependency order, then the routers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llamastack.providers.registry import get_spec, providers_for

from .apis.agents import Agents
from .apis.common import Resource
from .apis.tools import RAGToolRuntime, RegisterToolGroupRequest
from .config import ProviderConfig, RunConfig
from .datatypes import API_PARTS, Api, ProviderDeps, ProviderSpec
from .errors import ConfigError
from .library_imports import library_imports
from .outbound import OutboundPolicy
from .routing.chat_completions import ChatCompletionStore
from .routing.files import FilesRouter
from .routing.inference import InferenceRouter
from .routing.model_discovery import ModelDiscovery
from .routing.models import ModelsTable
from .routing.responses import ResponsesRouter
from .routing.responses_tools import ResponseTools
from .routing.safety import SafetyRouter, ShieldsTable
from .routing.table import VERSION_PREFIX, ResourceTable
from .routing.tool_runtime import ToolRuntimeRouter
from .routing.vector_io import VectorDBsTable, VectorIORouter
from .routing.vector_stores import OpenAIVectorStores
from .storage import open_storage
from .storage.kvstore import KVStore, SqliteKVStore
from .storage.replicas import ReplicaLeases

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)


@dataclass(slots=True)
class ProviderInstance:
    api: Api
    provider_id: str
    spec: ProviderSpec
    config: BaseModel
    impl: Any


@dataclass
class Stack:
    """Everything a running server holds: providers per API, the routers and resource tables built
    over them (None where the run config has no provider for the API), the store."""

    run_config: RunConfig
    store: KVStore
    replicas: ReplicaLeases | None = None  # this process's lease on a shared database
    providers: dict[Api, dict[str, ProviderInstance]] = field(default_factory=dict)
    inference: InferenceRouter | None = None
    models: ModelsTable | None = None
    model_discovery: ModelDiscovery | None = None
    chat_completions: ChatCompletionStore | None = None
    responses: ResponsesRouter | None = None
    safety: SafetyRouter | None = None
    shields: ShieldsTable | None = None
    vector_io: VectorIORouter | None = None
    vector_dbs: VectorDBsTable | None = None
    vector_stores: OpenAIVectorStores | None = None
    tool_runtime: ToolRuntimeRouter | None = None
    rag_tool: RAGToolRuntime | None = None
    files: FilesRouter | None = None
    agents: Agents | None = None
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    _synced_at: int | None = field(default=None, init=False, repr=False)  # sqlite data_version
    # The run config's models, loading (each engine in its own thread) while the other APIs are built;
    # build_stack waits for them before it returns.
    models_loading: asyncio.Task[None] | None = None

    def tables(self) -> list[ResourceTable[Any, Any]]:
        """The resource registries this stack serves."""
        found: list[ResourceTable[Any, Any]] = []
        for owner, attr in ((self.models, "table"), (self.shields, "table"), (self.vector_dbs, "table")):
            if owner is not None:
                found.append(getattr(owner, attr))
        if self.tool_runtime is not None:
            found.append(self.tool_runtime.groups)
        return found

    async def sync_registries(self) -> None:
        """Takes in what other replicas registered or unregistered since this one last looked: one
        read of the registries' versions, and a reload of those that changed. On sqlite, only when
        another connection has committed anything since the last look (this replica's own writes
        keep its view current as they are made)."""
        tables = self.tables()
        if not tables:
            return
        marker = await self.store.data_version() if isinstance(self.store, SqliteKVStore) else None
        if marker is not None and marker == self._synced_at:
            return
        versions = dict(await self.store.items_with_prefix(VERSION_PREFIX))
        for table in tables:
            await table.sync(versions.get(table.version_key))
        self._synced_at = marker

    async def warm_up(self) -> None:
        """Once the server answers: the providers' deferred start-up work (e.g. opening a store), so
        that their first use does not wait for it. Failures are logged; the first use reports them."""
        for instance in self.provider_list():
            warm = getattr(instance.impl, "warm_up", None)
            if warm is not None:
                try:
                    await warm()
                except Exception as exc:
                    log.warning("Provider %s could not warm up: %s", instance.provider_id, exc)

    def provider_list(self) -> list[ProviderInstance]:
        return [p for by_id in self.providers.values() for p in by_id.values()]

    def built(self, api: Api) -> bool:
        """Whether the API is served (its providers exist and its router is built)."""
        return any(getattr(self, part) is not None for part in API_PARTS.get(api, ()))

    def deps(self, apis: tuple[Api, ...] = ()) -> ProviderDeps:
        """What a provider declaring `apis` receives: those APIs, typed, and the stack's services."""
        everything = ProviderDeps(
            inference=self.inference,
            models=self.models,
            safety=self.safety,
            shields=self.shields,
            vector_io=self.vector_io,
            vector_dbs=self.vector_dbs,
            vector_stores=self.vector_stores,
            tool_runtime=self.tool_runtime,
            tool_groups=self.tool_runtime,
            rag_tool=self.rag_tool,
            files=self.files,
            agents=self.agents,
            outbound=self.outbound,
            replicas=self.replicas,
        )
        return everything.limited_to(apis)

    async def shutdown(self) -> None:
        if self.model_discovery is not None:
            await self.model_discovery.stop()
        for instance in self.provider_list():
            stop = getattr(instance.impl, "shutdown", None)
            if stop is not None:
                try:
                    await stop()
                except Exception as exc:  # one provider failing to stop must not block the others
                    log.warning("Provider %s did not shut down cleanly: %s", instance.provider_id, exc)
        if self.chat_completions is not None:
            await self.chat_completions.close()  # the completions still waiting to be written
        if self.replicas is not None:
            await self.replicas.stop()
        await self.store.close()


def _import_attr(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(_imported(module), attr)


def _imported(module: str) -> Any:
    # Under the library import lock: a provider module may import numpy while the models already
    # loading in threads import it too (see library_imports.py).
    with library_imports:
        return importlib.import_module(module)


def _api(name: str) -> Api:
    try:
        return Api(name)
    except ValueError:
        known = ", ".join(sorted({s.api.value for s in providers_for()}))
        raise ConfigError(f"Unknown API '{name}' in run config providers. Known: {known}.") from None


def _api_order(run_config: RunConfig) -> list[Api]:
    graph: dict[Api, set[Api]] = {}
    for api_name, entries in run_config.providers.items():
        api = _api(api_name)
        deps: set[Api] = set()
        for entry in entries:
            spec = get_spec(api, entry.provider_type)
            if spec is not None:
                deps.update(spec.api_dependencies)
                # Optional dependencies that this config provides must be built first, too.
                configured = {_api(name) for name in run_config.providers}
                deps.update(d for d in spec.optional_api_dependencies if d in configured)
        graph[api] = deps
    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as exc:
        raise ConfigError(f"Provider dependencies form a cycle: {exc.args[1]}") from None
    # Of the APIs ready to build, those that wait for the models go last: the others (and their
    # providers' own start-up, e.g. the code interpreter's sandbox check) then overlap the loading.
    order: list[Api] = []
    ready: list[Api] = []
    while sorter.is_active():
        ready.extend(sorter.get_ready())
        ready.sort(key=lambda a: a in _AFTER_MODELS)
        order.append(ready.pop(0))
        sorter.done(order[-1])
    return order


async def _instantiate(api: Api, provider_id: str, entry: ProviderConfig, stack: Stack) -> ProviderInstance:
    spec = get_spec(api, entry.provider_type)
    if spec is None:
        known = ", ".join(s.provider_type for s in providers_for(api)) or "none"
        raise ConfigError(
            f"Unknown provider type '{entry.provider_type}' for API '{api}'. Known: {known}. "
            "See `llama-stack list-providers`."
        )
    missing = [d for d in spec.api_dependencies if not stack.built(d)]
    if missing:
        raise ConfigError(
            f"Provider '{entry.provider_id}' needs the {', '.join(missing)} API; add a provider for it."
        )
    config_class = _import_attr(spec.config_class)
    try:
        config = config_class.model_validate(entry.config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Invalid config for provider '{entry.provider_id}': {problems}") from None
    deps = dataclasses.replace(
        stack.deps((*spec.api_dependencies, *spec.optional_api_dependencies)),
        store=stack.store.namespaced(provider_namespace(api, provider_id)),
    )
    try:
        impl = await _imported(spec.module).get_provider_impl(config, deps)
    except ImportError as exc:
        if (exc.name or "").startswith("llamastack"):
            raise  # our own code is broken: not something the user can install
        raise ConfigError(
            f"Provider '{entry.provider_id}' ({spec.provider_type}) cannot load: {exc}. "
            f"Install its packages: pip install {' '.join(repr(p) for p in spec.pip_packages)}"
        ) from None
    return ProviderInstance(api=api, provider_id=provider_id, spec=spec, config=config, impl=impl)


def provider_namespace(api: Api, provider_id: str) -> str:
    """Where a provider's records live in the stack's database: its keys start `<api>/<id>:`."""
    return f"{api.value}/{provider_id}"


async def build_stack(run_config: RunConfig) -> Stack:
    run_config.state_path.mkdir(parents=True, exist_ok=True)
    storage = run_config.storage_config()
    stack = Stack(run_config=run_config, store=await open_storage(storage))
    log.info("Storage: %s", storage.describe())
    stack.outbound = OutboundPolicy(run_config.server.outbound)
    try:
        # Before any provider starts: recovery and every turn or ingestion record this replica's id.
        stack.replicas = ReplicaLeases(stack.store, lease_s=storage.replica_lease_s)
        await stack.replicas.start()
        ids: set[str] = set()
        for api in _api_order(run_config):
            instances: dict[str, ProviderInstance] = {}
            for entry in run_config.providers.get(api.value, []):
                if not entry.provider_id:
                    continue  # switched off from the environment
                if entry.provider_id in ids:
                    raise ConfigError(f"provider_id '{entry.provider_id}' is used twice in the run config.")
                ids.add(entry.provider_id)
                instances[entry.provider_id] = await _instantiate(api, entry.provider_id, entry, stack)
            stack.providers[api] = instances
            builder = _ROUTER_BUILDERS.get(api)
            if builder is not None and instances:
                if api in _AFTER_MODELS:
                    await _models_loaded(stack)
                await builder(stack, instances)
        await _models_loaded(stack)
        if stack.model_discovery is not None:
            # The engines' own models, where refresh_models is on: after the run config's models,
            # so an engine model one of them already maps is not added a second time.
            await stack.model_discovery.start()
        if stack.inference is not None:
            await _build_responses(stack)
    except BaseException:
        if stack.models_loading is not None:  # engines load in threads: let them finish before closing
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await stack.models_loading
        await stack.shutdown()
        raise
    return stack


async def _models_loaded(stack: Stack) -> None:
    if stack.models_loading is not None:
        await stack.models_loading


def _impls(instances: dict[str, ProviderInstance]) -> dict[str, Any]:
    return {pid: inst.impl for pid, inst in instances.items()}


async def _load_configured(
    table: ResourceTable[R, Any], kind: str, entries: Sequence[tuple[str | None, Callable[[], R]]]
) -> None:
    """Registers the run config's resources of one kind (entries switched off, with no id, are
    skipped), then the stored ones; any problem stops start-up with a message naming the entry."""
    configured = []
    for ident, build in entries:
        if not ident:
            continue  # switched off from the environment
        try:
            configured.append(build())
        except Exception as exc:
            raise ConfigError(
                f"{kind.capitalize()} '{ident}' in the run config: {getattr(exc, 'detail', exc)}"
            ) from None
    try:
        await table.load(configured)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"Could not load the run config's {kind}s: {getattr(exc, 'detail', exc)}") from None


async def _build_inference(stack: Stack, instances: dict[str, ProviderInstance]) -> None:
    models = ModelsTable(stack.store, _impls(instances))
    entries = [
        (
            m.model_id,
            functools.partial(
                models.build,
                m.model_id or "",
                provider_id=m.provider_id,
                provider_model_id=m.provider_model_id,
                model_type=m.model_type,
                metadata=m.metadata,
            ),
        )
        for m in stack.run_config.models
    ]
    # Loading the engines is most of a start; the other APIs are built meanwhile (none of their
    # providers needs a model before its router is built, see _AFTER_MODELS).
    stack.models_loading = asyncio.create_task(_load_configured(models.table, "model", entries))
    stack.models = models
    stack.model_discovery = ModelDiscovery(models)
    stack.inference = InferenceRouter(models)
    stack.chat_completions = ChatCompletionStore(
        stack.store, enabled=stack.run_config.inference_store.enabled
    )


async def _build_responses(stack: Stack) -> None:
    """The Responses API drives inference, with the vector stores (file_search), the tool runtime
    (web_search, mcp) and the shields (guardrails) that the run config has."""
    assert stack.inference is not None
    config = stack.run_config.responses
    for shield_id in dict.fromkeys([*config.input_shields, *config.output_shields]):
        if not shield_id:
            continue
        if stack.shields is None:
            raise ConfigError(f"responses: shield '{shield_id}' needs a safety provider in the run config.")
        if stack.shields.table.find(shield_id) is None:
            raise ConfigError(f"responses: shield '{shield_id}' is not in the run config's shields.")
    tools = ResponseTools(
        vector_stores=stack.vector_stores,
        tool_groups=stack.tool_runtime,
        tool_runtime=stack.tool_runtime,
        mcp=stack.tool_runtime,
    )
    stack.responses = ResponsesRouter(
        stack.inference,
        stack.store,
        tools=tools,
        safety=stack.safety,
        shields=stack.shields,
        input_shields=[s for s in config.input_shields if s],
        output_shields=[s for s in config.output_shields if s],
    )


async def _build_safety(stack: Stack, instances: dict[str, ProviderInstance]) -> None:
    shields = ShieldsTable(stack.store, _impls(instances))
    entries = [
        (
            s.shield_id,
            functools.partial(
                shields.build,
                s.shield_id or "",
                provider_id=s.provider_id,
                provider_shield_id=s.provider_shield_id,
                params=s.params,
            ),
        )
        for s in stack.run_config.shields
    ]
    await _load_configured(shields.table, "shield", entries)
    stack.shields = shields
    stack.safety = SafetyRouter(shields)


async def _build_vector_io(stack: Stack, instances: dict[str, ProviderInstance]) -> None:
    if stack.inference is None or stack.models is None:
        raise ConfigError("vector_io providers need an inference provider serving an embedding model.")
    dbs = VectorDBsTable(stack.store, _impls(instances), stack.inference, stack.models)
    await dbs.table.load([])
    stack.vector_dbs = dbs
    stack.vector_io = VectorIORouter(dbs)
    stack.vector_stores = OpenAIVectorStores(
        stack.store,
        vector_io=stack.vector_io,
        vector_dbs=dbs,
        models=stack.models,
        files=lambda: stack.files,
        replicas=stack.replicas,
    )
    await stack.vector_stores.recover()  # before anything is served: no half-indexed file stays around


async def _build_tool_runtime(stack: Stack, instances: dict[str, ProviderInstance]) -> None:
    rag = [i for i in instances.values() if i.spec.serves_rag_tool]
    if len(rag) > 1:
        raise ConfigError(f"Only one RAG tool provider can run at a time; the run config has {len(rag)}.")
    mcp = [pid for pid, i in instances.items() if i.spec.serves_mcp_endpoints]
    router = ToolRuntimeRouter(stack.store, _impls(instances), mcp_provider_id=mcp[0] if mcp else None)
    entries = [
        (
            g.toolgroup_id,
            functools.partial(router.build, RegisterToolGroupRequest.model_validate(g.model_dump())),
        )
        for g in stack.run_config.tool_groups
    ]
    await _load_configured(router.groups, "tool group", entries)
    stack.tool_runtime = router
    stack.rag_tool = rag[0].impl if rag else None


async def _build_files(stack: Stack, instances: dict[str, ProviderInstance]) -> None:
    if len(instances) > 1:
        raise ConfigError(f"The files API takes one provider; the run config has {', '.join(instances)}.")
    stack.files = FilesRouter(next(iter(instances.values())).impl)


async def _build_agents(stack: Stack, instances: dict[str, ProviderInstance]) -> None:
    if len(instances) > 1:
        raise ConfigError("Only one agents provider can run at a time.")
    stack.agents = next(iter(instances.values())).impl


# Builders that read the models table: shields are checked against their model when registered.
_AFTER_MODELS = {Api.safety}

# Per API, what to build once its providers exist: the router other APIs and the routes use.
_ROUTER_BUILDERS = {
    Api.agents: _build_agents,
    Api.inference: _build_inference,
    Api.safety: _build_safety,
    Api.vector_io: _build_vector_io,
    Api.tool_runtime: _build_tool_runtime,
    Api.files: _build_files,
}
