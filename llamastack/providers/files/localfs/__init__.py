"""inline::localfs: uploaded files on the local disk (or a directory shared by replicas), their
metadata in the stack's database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llamastack.stack.datatypes import ProviderDeps
from llamastack.stack.library_imports import library_imports

from .config import LocalFSFilesConfig

if TYPE_CHECKING:
    from .provider import LocalFSFiles


async def get_provider_impl(config: LocalFSFilesConfig, deps: ProviderDeps) -> LocalFSFiles:
    with library_imports:  # the implementation's libraries take turns with other threads' imports
        from .provider import LocalFSFiles

    impl = LocalFSFiles(config, deps.store)
    await impl.initialize()
    return impl


__all__ = ["get_provider_impl"]
