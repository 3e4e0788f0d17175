"""Models API: the registry of models the stack serves."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from .common import Resource, ResourceType


class ModelType(StrEnum):
    llm = "llm"
    embedding = "embedding"


class Model(Resource):
    type: Literal[ResourceType.model] = ResourceType.model
    metadata: dict[str, Any] = Field(default_factory=dict)
    model_type: ModelType = ModelType.llm


class ListModelsResponse(BaseModel):
    data: list[Model]


class RegisterModelRequest(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str = Field(min_length=1)
    provider_model_id: str | None = None
    provider_id: str | None = None
    metadata: dict[str, Any] | None = None
    model_type: ModelType | None = None


class RefreshModelsRequest(BaseModel):
    provider_id: str | None = Field(
        default=None,
        description="The provider whose engine to ask; every provider that lists models if omitted.",
    )


class ProviderModelsRefresh(BaseModel):
    """What one provider's engine listed, and what that changed in the registry."""

    provider_id: str
    status: Literal["OK", "Error"]
    message: str | None = Field(default=None, description="Why the engine could not be asked (status Error).")
    served: list[str] = Field(
        default_factory=list, description="The engine's own model ids, as it lists them."
    )
    added: list[str] = Field(default_factory=list, description="Model ids registered now (discovered).")
    removed: list[str] = Field(
        default_factory=list, description="Discovered model ids unregistered because the engine dropped them."
    )
    unchanged: list[str] = Field(default_factory=list, description="Discovered model ids still served.")


class RefreshModelsResponse(BaseModel):
    data: list[ProviderModelsRefresh]


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAIListModelsResponse(BaseModel):
    data: list[OpenAIModel]


class Models(Protocol):
    async def list_models(self) -> ListModelsResponse: ...
    async def get_model(self, model_id: str) -> Model: ...
    async def register_model(self, request: RegisterModelRequest) -> Model: ...
    async def unregister_model(self, model_id: str) -> None: ...
