"""The key-value store in PostgreSQL (asyncpg and its connection pool), for several replicas.

The same table and key layout as sqlite: `kvstore (key, value)` with keys ordered by code point.
While the database is unreachable (restarting, network down), every call fails fast with
StorageUnavailableError: a 503 with Retry-After, never a 500. The pool drops broken connections
and opens new ones by itself, so service resumes when the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import StorageConfig
from ..errors import BadRequestError, ConfigError, StorageUnavailableError
from ..secrets import secret_value
from .kvstore import KVTransaction
from .migrations import apply_postgres

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

T = TypeVar("T")
_END = "\uffff"

_GET = "SELECT value FROM kvstore WHERE key = $1"
_GET_FOR_UPDATE = "SELECT value FROM kvstore WHERE key = $1 FOR UPDATE"
_SET = (
    "INSERT INTO kvstore (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
_INSERT = "INSERT INTO kvstore (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING 1"
_DELETE = "DELETE FROM kvstore WHERE key = $1"
_RANGE = "SELECT key, value FROM kvstore WHERE key >= $1 AND key < $2 ORDER BY key"
_PAGE = "SELECT key, value FROM kvstore WHERE key >= $1 AND key < $2 AND key > $3 ORDER BY key LIMIT $4"


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (
        OSError,  # refused, reset, unreachable
        asyncio.TimeoutError,
        asyncpg.PostgresConnectionError,  # connection lost / cannot connect now
        asyncpg.InterfaceError,  # connection closed under a pool
        asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
        asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    )


def _check_text(*values: str) -> None:
    # PostgreSQL text cannot hold NUL; sqlite can. Refuse it the same way everywhere it reaches.
    if any("\x00" in v for v in values):
        raise BadRequestError("Identifiers and stored text cannot contain NUL (\\u0000) characters.")


class _Pool:
    """The asyncpg pool and the error mapping shared by every namespaced view."""

    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self.where = config.describe()
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        import asyncpg

        kwargs: dict[str, Any] = {
            "host": self.config.host,
            "port": self.config.port,
            "database": self.config.database,
            "user": self.config.user,
            "password": secret_value(self.config.password),
            "min_size": self.config.pool_min_size,
            "max_size": self.config.pool_max_size,
            "timeout": self.config.connect_timeout_s,
            "command_timeout": self.config.command_timeout_s,
        }
        if self.config.sslmode:
            kwargs["ssl"] = self.config.sslmode
        try:
            self.pool = await asyncpg.create_pool(**kwargs)
            async with self.pool.acquire(timeout=self.config.connect_timeout_s) as conn:
                await apply_postgres(conn)
        except _unavailable_errors() as exc:
            await self.close()
            raise ConfigError(
                f"Cannot reach the database ({self.where}): {type(exc).__name__}. Check that PostgreSQL "
                "is running and LLAMA_STACK_DATABASE_URL (or the storage block) points at it."
            ) from None
        except asyncpg.PostgresError as exc:
            await self.close()
            # asyncpg's messages name the user or database, never the password.
            raise ConfigError(f"The database ({self.where}) refused the stack: {exc}") from None

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=10)

    def unavailable(self, exc: BaseException) -> StorageUnavailableError:
        log.warning("Database %s unavailable: %s", self.where, type(exc).__name__)
        return StorageUnavailableError(
            "The database is unavailable right now; retry shortly.", retry_after_s=2
        )

    async def call(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self.pool is None:
            raise StorageUnavailableError("The database connection is closed.", retry_after_s=2)
        try:
            async with self.pool.acquire(timeout=self.config.connect_timeout_s) as conn:
                return await work(conn)
        except _unavailable_errors() as exc:
            raise self.unavailable(exc) from None


class _PostgresTransaction:
    def __init__(self, conn: asyncpg.Connection, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix

    async def get(self, key: str) -> str | None:
        _check_text(key)
        # FOR UPDATE: another writer of this key waits until this transaction ends.
        value = await self.conn.fetchval(_GET_FOR_UPDATE, self.prefix + key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str) -> None:
        _check_text(key, value)
        await self.conn.execute(_SET, self.prefix + key, value)

    async def insert_if_absent(self, key: str, value: str) -> bool:
        _check_text(key, value)
        return await self.conn.fetchval(_INSERT, self.prefix + key, value) is not None

    async def delete(self, key: str) -> None:
        _check_text(key)
        await self.conn.execute(_DELETE, self.prefix + key)

    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        _check_text(prefix)
        start = self.prefix + prefix
        rows = await self.conn.fetch(_RANGE, start, start + _END)
        return [(str(r["key"])[len(self.prefix) :], str(r["value"])) for r in rows]


class PostgresKVStore:
    def __init__(self, pool: _Pool, prefix: str = "", *, owner: bool = False) -> None:
        self._pool = pool
        self.prefix = prefix
        self._owner = owner

    @classmethod
    async def connect(cls, config: StorageConfig) -> PostgresKVStore:
        """Opens the pool and applies the migrations (ConfigError if the database cannot be used)."""
        pool = _Pool(config)
        await pool.open()
        return cls(pool, owner=True)

    async def get(self, key: str) -> str | None:
        _check_text(key)
        value = await self._pool.call(lambda c: c.fetchval(_GET, self.prefix + key))
        return None if value is None else str(value)

    async def set(self, key: str, value: str) -> None:
        _check_text(key, value)
        await self._pool.call(lambda c: c.execute(_SET, self.prefix + key, value))

    async def insert_if_absent(self, key: str, value: str) -> bool:
        _check_text(key, value)
        return await self._pool.call(lambda c: c.fetchval(_INSERT, self.prefix + key, value)) is not None

    async def delete(self, key: str) -> None:
        _check_text(key)
        await self._pool.call(lambda c: c.execute(_DELETE, self.prefix + key))

    async def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        _check_text(prefix)
        start = self.prefix + prefix
        rows = await self._pool.call(lambda c: c.fetch(_RANGE, start, start + _END))
        return [(str(r["key"])[len(self.prefix) :], str(r["value"])) for r in rows]

    async def values_with_prefix(self, prefix: str) -> list[str]:
        return [value for _, value in await self.items_with_prefix(prefix)]

    async def set_many(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        for key, value in items:
            _check_text(key, value)
        rows = [(self.prefix + key, value) for key, value in items]

        async def write(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.executemany(_SET, rows)

        await self._pool.call(write)

    async def items_after(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        _check_text(prefix, after or "")
        start = self.prefix + prefix
        cursor = self.prefix + (after or "")
        rows = await self._pool.call(lambda c: c.fetch(_PAGE, start, start + _END, cursor, limit))
        return [(str(r["key"])[len(self.prefix) :], str(r["value"])) for r in rows]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[KVTransaction]:
        pool = self._pool
        if pool.pool is None:
            raise StorageUnavailableError("The database connection is closed.", retry_after_s=2)
        try:
            async with pool.pool.acquire(timeout=pool.config.connect_timeout_s) as conn, conn.transaction():
                yield _PostgresTransaction(conn, self.prefix)
        except _unavailable_errors() as exc:
            raise pool.unavailable(exc) from None

    def namespaced(self, namespace: str) -> PostgresKVStore:
        return PostgresKVStore(self._pool, f"{self.prefix}{namespace}:")

    async def close(self) -> None:
        if self._owner:
            await self._pool.close()
