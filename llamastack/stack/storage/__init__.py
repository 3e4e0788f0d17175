"""Storage: the kv store (sqlite or PostgreSQL) and the validated record store built on it."""

from __future__ import annotations

from ..config import StorageConfig
from .kvstore import KVStore, KVTransaction, SqliteKVStore
from .records import RecordStore

__all__ = ["KVStore", "KVTransaction", "RecordStore", "SqliteKVStore", "open_storage"]


async def open_storage(config: StorageConfig) -> KVStore:
    """The stack's one backend, migrated and ready; ConfigError if it cannot be used."""
    if config.type == "postgres":
        try:
            import asyncpg  # noqa: F401  (the optional driver)
        except ImportError:  # pragma: no cover - depends on the extras installed
            from ..errors import ConfigError

            raise ConfigError(
                "A postgresql:// database needs asyncpg: pip install 'llamastack[postgres]'."
            ) from None
        from .postgres import PostgresKVStore

        return await PostgresKVStore.connect(config)
    if not config.db_path:
        from ..errors import ConfigError

        raise ConfigError("storage.db_path is required for a sqlite database.")
    import asyncio

    return await asyncio.to_thread(SqliteKVStore, config.db_path)
