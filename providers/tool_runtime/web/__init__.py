"""remote::brave-search, remote::tavily-search (builtin::websearch) and remote::wolfram-alpha."""

from __future__ import annotations

from typing import Any

from llamastack.stack.datatypes import ProviderDeps

from .config import BraveSearchConfig, TavilySearchConfig, WolframAlphaConfig


async def get_provider_impl(
    config: BraveSearchConfig | TavilySearchConfig | WolframAlphaConfig, deps: Any
) -> Any:
    from .provider import BraveSearch, TavilySearch, WolframAlpha

    kinds = {
        BraveSearchConfig: BraveSearch,
        TavilySearchConfig: TavilySearch,
        WolframAlphaConfig: WolframAlpha,
    }
    return kinds[type(config)](config, ProviderDeps.outbound_of(deps))
