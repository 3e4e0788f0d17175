"""inline::sqlite-vec: vectors in one sqlite file (sqlite-vec extension); tiny footprint, no server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import SqliteVecConfig

if TYPE_CHECKING:
    from .provider import SqliteVecVectorIO


async def get_provider_impl(config: SqliteVecConfig, deps: ProviderDeps) -> SqliteVecVectorIO:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import SqliteVecVectorIO

    return await SqliteVecVectorIO.open(config)


__all__ = ["get_provider_impl"]
