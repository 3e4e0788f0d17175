"""inline::sqlite-vec: vectors in one sqlite file (sqlite-vec extension); tiny footprint, no server."""

from __future__ import annotations

from typing import Any

from .config import SqliteVecConfig


async def get_provider_impl(config: SqliteVecConfig, deps: dict[Any, Any]) -> Any:
    from .provider import SqliteVecVectorIO

    return await SqliteVecVectorIO.open(config)
