"""remote::brave-search, remote::tavily-search (builtin::websearch) and remote::wolfram-alpha."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import BraveSearchConfig, TavilySearchConfig, WolframAlphaConfig

if TYPE_CHECKING:
    from .provider import BraveSearch, TavilySearch, WolframAlpha


async def get_provider_impl(
    config: BraveSearchConfig | TavilySearchConfig | WolframAlphaConfig, deps: ProviderDeps
) -> BraveSearch | TavilySearch | WolframAlpha:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import BraveSearch, TavilySearch, WolframAlpha

    if isinstance(config, BraveSearchConfig):
        return BraveSearch(config, deps.outbound)
    if isinstance(config, TavilySearchConfig):
        return TavilySearch(config, deps.outbound)
    return WolframAlpha(config, deps.outbound)


__all__ = ["get_provider_impl"]
