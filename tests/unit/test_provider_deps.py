"""A provider receives exactly the APIs its registry entry declares, typed, and nothing else."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from llamastack.providers.registry import PROVIDERS
from llamastack.stack.datatypes import API_PARTS, SERVICES, Api, ProviderDeps, required
from llamastack.stack.errors import ConfigError


def _everything() -> ProviderDeps:
    parts: dict[str, Any] = {
        f.name: object() for f in dataclasses.fields(ProviderDeps) if f.name != "outbound"
    }  # the store is a plain object too: limited_to must keep it
    return ProviderDeps(**parts)


def test_declaring_an_api_gives_all_of_its_parts_and_only_those() -> None:
    deps = _everything().limited_to([Api.inference, Api.safety])
    given = {f.name for f in dataclasses.fields(deps) if getattr(deps, f.name) is not None}
    assert given == {"inference", "models", "safety", "shields", "outbound", "store", "replicas"}


def test_every_field_belongs_to_one_api() -> None:
    fields = {f.name for f in dataclasses.fields(ProviderDeps)} - set(SERVICES)
    parts = [part for parts in API_PARTS.values() for part in parts]
    assert sorted(parts) == sorted(fields)


def test_the_outbound_policy_always_comes_along() -> None:
    deps = _everything()
    assert deps.limited_to([]).outbound is deps.outbound


def test_the_providers_own_store_always_comes_along() -> None:
    deps = _everything()
    assert deps.store is not None and deps.limited_to([]).store is deps.store


def test_a_required_api_that_is_missing_names_it() -> None:
    with pytest.raises(ConfigError, match="needs the vector_io API"):
        required(ProviderDeps().vector_io, Api.vector_io)


def test_registry_dependencies_are_apis_that_bring_parts() -> None:
    for spec in PROVIDERS:
        for api in (*spec.api_dependencies, *spec.optional_api_dependencies):
            assert api in API_PARTS, f"{spec.provider_type} depends on {api}, which gives no deps"
    rag = [s.provider_type for s in PROVIDERS if s.serves_rag_tool]
    assert rag == ["inline::rag-runtime"]
    assert all(s.api == Api.tool_runtime for s in PROVIDERS if s.serves_rag_tool)
