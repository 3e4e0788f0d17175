"""The Models API: which models exist and which inference provider owns each."""

from __future__ import annotations

from typing import Any

from ..apis.inference.core import InferenceProvider
from ..apis.models import ListModelsResponse, Model, ModelType, RegisterModelRequest
from ..errors import BadRequestError, ModelNotFoundError, ProviderNotFoundError
from ..storage.kvstore import KVStore
from .table import ResourceTable


async def _register_with_provider(provider: InferenceProvider, model: Model) -> Model:
    return await provider.register_model(model)


async def _unregister_with_provider(provider: InferenceProvider, model: Model) -> None:
    await provider.unregister_model(model)


class ModelsTable:
    def __init__(self, store: KVStore, providers: dict[str, InferenceProvider]) -> None:
        self.providers = providers
        self.table: ResourceTable[Model, InferenceProvider] = ResourceTable(
            kind="model",
            resource_class=Model,
            store=store,
            owners=providers,
            register_hook=_register_with_provider,
            unregister_hook=_unregister_with_provider,
            not_found=ModelNotFoundError,
            load_together=True,
        )

    def get(self, model_id: str) -> Model:
        return self.table.get(model_id)

    def owner(self, model: Model) -> InferenceProvider:
        return self.table.owner(model)

    def pick_provider(self, provider_id: str | None, model_type: ModelType) -> str:
        if provider_id is not None:
            if provider_id not in self.providers:
                raise ProviderNotFoundError(provider_id, list(self.providers))
            return provider_id
        able = [
            pid
            for pid, impl in self.providers.items()
            if model_type in getattr(impl, "supported_model_types", (ModelType.llm,))
        ]
        if len(able) == 1:
            return able[0]
        if not able:
            raise BadRequestError(f"No configured inference provider serves {model_type.value} models.")
        raise BadRequestError(
            f"Several providers can serve {model_type.value} models ({', '.join(able)}); "
            "say which one with provider_id."
        )

    def build(
        self,
        model_id: str,
        *,
        provider_id: str | None,
        provider_model_id: str | None,
        model_type: ModelType | str | None,
        metadata: dict[str, Any] | None,
    ) -> Model:
        kind = ModelType(model_type) if model_type else ModelType.llm
        return Model(
            identifier=model_id,
            provider_id=self.pick_provider(provider_id, kind),
            provider_resource_id=provider_model_id or model_id,
            model_type=kind,
            metadata=metadata or {},
        )

    # Models protocol

    async def list_models(self) -> ListModelsResponse:
        return ListModelsResponse(data=self.table.list())

    async def get_model(self, model_id: str) -> Model:
        return self.table.get(model_id)

    async def register_model(self, request: RegisterModelRequest) -> Model:
        model = self.build(
            request.model_id,
            provider_id=request.provider_id,
            provider_model_id=request.provider_model_id,
            model_type=request.model_type,
            metadata=request.metadata,
        )
        return await self.table.register(model)

    async def unregister_model(self, model_id: str) -> None:
        await self.table.unregister(model_id)
