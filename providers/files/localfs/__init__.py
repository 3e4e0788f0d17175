"""inline::localfs: uploaded files on the local disk, their metadata in a sqlite file beside them."""

from __future__ import annotations

from typing import Any

from .config import LocalFSFilesConfig


async def get_provider_impl(config: LocalFSFilesConfig, deps: dict[Any, Any]) -> Any:
    from .provider import LocalFSFiles

    impl = LocalFSFiles(config)
    await impl.initialize()
    return impl
