"""Records of an older version, which kept some providers' state in sqlite files of their own
(`agents.db`, `files/files.db`): imported once into the provider's namespace of the stack's
database, so an upgrade loses nothing. The old file is left as it was."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

from .kvstore import KVStore

log = logging.getLogger(__name__)


def _rows(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(str(k), str(v)) for k, v in conn.execute("SELECT key, value FROM kvstore ORDER BY key")]
    except sqlite3.DatabaseError:  # not one of ours (no kvstore table, not sqlite at all)
        return []
    finally:
        conn.close()


async def import_sqlite_file(path: Path, into: KVStore) -> int:
    """Copies the records of `path` into the store unless done before; records already in the store
    win. How many were copied."""
    path = path.expanduser()
    if not await asyncio.to_thread(path.is_file):
        return 0
    marker = f"legacy_import:{path.resolve()}"
    if await into.get(marker) is not None:
        return 0
    rows = await asyncio.to_thread(_rows, path)
    copied = 0
    async with into.transaction() as tx:
        if await tx.get(marker) is not None:  # another replica did it meanwhile
            return 0
        for key, value in rows:
            copied += await tx.insert_if_absent(key, value)
        await tx.set(marker, str(int(time.time())))
    if copied:
        log.info("Imported %d record(s) from %s into the stack's database (the file is kept).", copied, path)
    return copied
