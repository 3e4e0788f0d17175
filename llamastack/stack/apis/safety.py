"""Shields and Safety APIs: named content checks, and running one over a conversation."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from .common import Resource, ResourceType
from .inference.native import Message


class Shield(Resource):
    type: Literal[ResourceType.shield] = ResourceType.shield
    params: dict[str, Any] | None = None


class ListShieldsResponse(BaseModel):
    data: list[Shield]


class RegisterShieldRequest(BaseModel):
    shield_id: str = Field(min_length=1)
    provider_shield_id: str | None = None
    provider_id: str | None = None
    params: dict[str, Any] | None = None


class ViolationLevel(StrEnum):
    info = "info"
    warn = "warn"
    error = "error"


class SafetyViolation(BaseModel):
    violation_level: ViolationLevel
    user_message: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class RunShieldRequest(BaseModel):
    shield_id: str
    messages: list[Message] = Field(min_length=1)
    params: dict[str, Any]


class RunShieldResponse(BaseModel):
    violation: SafetyViolation | None = None


# The canned answer shown to users when a shield blocks something.
CANNED_RESPONSE = "I can't answer that. Can I help with something else?"


class Shields(Protocol):
    """The Shields API: which shields exist, and which safety provider owns each."""

    async def list_shields(self) -> ListShieldsResponse: ...

    async def get_shield(self, identifier: str) -> Shield: ...

    async def register_shield(self, request: RegisterShieldRequest) -> Shield: ...

    async def unregister_shield(self, identifier: str) -> None: ...


class Safety(Protocol):
    """The Safety API: runs a shield, by id, over a conversation."""

    async def run_shield(
        self, shield_id: str, messages: list[Message], params: dict[str, Any]
    ) -> RunShieldResponse: ...


class SafetyProvider(Protocol):
    """What a safety provider implements; the router hands it the resolved Shield."""

    async def register_shield(self, shield: Shield) -> Shield:
        """Checks the shield (e.g. that its guard model is served); returns it, perhaps completed."""
        ...

    async def unregister_shield(self, shield: Shield) -> None: ...

    async def run_shield(
        self, shield: Shield, messages: list[Message], params: dict[str, Any]
    ) -> RunShieldResponse: ...
