"""The database schema, as append-only named migrations applied exactly once per database.

Never edit or reorder a migration that has shipped: add a new one at the end. Each database keeps
the names it has applied in `schema_migrations`. sqlite applies them under its write lock; PostgreSQL
under a transaction-scoped advisory lock, so replicas that start together apply each one once (the
second waits, then finds it applied).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sqlite: str
    postgres: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        name="0001_kvstore",
        # IF NOT EXISTS: databases made before migrations were recorded already have the table.
        sqlite="CREATE TABLE IF NOT EXISTS kvstore (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # COLLATE "C": keys order by code point, as in sqlite, so prefix ranges mean the same thing.
        postgres='CREATE TABLE IF NOT EXISTS kvstore (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL)',
    ),
)

# Any fixed number: the key of the advisory lock that serialises migrations across replicas.
ADVISORY_LOCK_KEY = 0x4C4C5354  # "LLST"

_CREATE_LEDGER = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)


def _warn_unknown(applied: set[str]) -> None:
    unknown = applied - {m.name for m in MIGRATIONS}
    if unknown:
        log.warning(
            "The database has migrations this version does not know (%s): it was used by a newer "
            "version. Upgrade this server to match the others.",
            ", ".join(sorted(unknown)),
        )


def apply_sqlite(conn: sqlite3.Connection) -> list[str]:
    """Applies the missing migrations on a connection in autocommit mode; the names applied."""
    done: list[str] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_CREATE_LEDGER)
        applied = {str(row[0]) for row in conn.execute("SELECT name FROM schema_migrations")}
        _warn_unknown(applied)
        for migration in MIGRATIONS:
            if migration.name not in applied:
                conn.execute(migration.sqlite)
                conn.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, datetime('now'))",
                    (migration.name,),
                )
                done.append(migration.name)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return done


async def apply_postgres(conn: asyncpg.Connection) -> list[str]:
    """Applies the missing migrations in one transaction, under the advisory lock; the names applied."""
    done: list[str] = []
    async with conn.transaction():
        # Released at commit or rollback; a second replica waits here until the first is done.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
        await conn.execute(_CREATE_LEDGER)
        applied = {str(row["name"]) for row in await conn.fetch("SELECT name FROM schema_migrations")}
        _warn_unknown(applied)
        for migration in MIGRATIONS:
            if migration.name not in applied:
                await conn.execute(migration.postgres)
                await conn.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES ($1, now()::text)",
                    migration.name,
                )
                done.append(migration.name)
    if done:
        log.info("Applied database migrations: %s", ", ".join(done))
    return done
