"""Files on the local disk: content as `<storage_dir>/<file id>`, metadata in the stack's database
(or, for a provider built outside a stack, `<storage_dir>/files.db`). Replicas that share the folder
and the database serve each other's files.

An upload streams into a temporary file in the same folder and becomes visible only once complete:
the temporary file is synced and renamed to its id, then the metadata is written. A failed or
abandoned upload removes its temporary file and leaves every stored file as it was. Leftovers of a
crash (temporary files, content without metadata) are removed at the next start: an upload holds an
exclusive lock on its file until its metadata is written, and the operating system drops the lock
when the process dies, so an unlocked leftover is a crash's, never an upload still under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from llamastack.stack.apis.files import OpenAIFilePurpose, StoredFile
from llamastack.stack.errors import OpenAIFileNotFoundError, PayloadTooLargeError, StackError
from llamastack.stack.storage.kvstore import KVStore, SqliteKVStore
from llamastack.stack.storage.legacy import import_sqlite_file
from llamastack.stack.storage.records import RecordStore

from .config import LocalFSFilesConfig

log = logging.getLogger(__name__)

_ID = re.compile(r"file-[0-9a-f]{32}")
_TMP_PREFIX = ".upload-"
_STALE_S = 600  # without file locks (not POSIX): leftovers older than this are a crash's


def _lock(fh: BinaryIO) -> None:
    """Marks the file as an upload under way, for as long as `fh` stays open."""
    with contextlib.suppress(ImportError):
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _abandoned(path: Path) -> bool:
    """True when no live upload holds the file (the process that wrote it is gone)."""
    try:
        import fcntl
    except ImportError:
        return path.stat().st_mtime < time.time() - _STALE_S
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False  # renamed or removed meanwhile by its upload
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also releases the lock


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The file is larger than this server's upload limit of {limit} bytes ({limit / 2**20:.1f} MiB)."
    )


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Upload:
    def __init__(self, owner: LocalFSFiles, tmp_path: Path, fh: BinaryIO) -> None:
        self._owner = owner
        self._tmp = tmp_path
        self._fh: BinaryIO | None = fh
        self.size = 0

    async def write(self, data: bytes) -> None:
        if self._fh is None:
            raise RuntimeError("upload already finished")
        self.size += len(data)
        if self.size > self._owner.max_file_bytes:
            raise too_large(self._owner.max_file_bytes)
        await asyncio.to_thread(self._fh.write, data)

    def _seal(self, final: Path) -> None:
        """Content durable under its final name; the file stays open (and locked) until commit ends."""
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        os.replace(self._tmp, final)
        _sync_dir(final.parent)

    async def commit(
        self, *, filename: str, purpose: OpenAIFilePurpose, content_type: str, owner: str | None = None
    ) -> StoredFile:
        if self._fh is None:
            raise RuntimeError("upload already finished")
        record = StoredFile(
            id=f"file-{uuid.uuid4().hex}",
            filename=filename,
            bytes=self.size,
            created_ns=time.time_ns(),
            purpose=purpose,
            content_type=content_type,
            owner=owner,
        )
        final = self._owner.content_path(record.id)
        try:
            await asyncio.to_thread(self._seal, final)
            await self._owner.records.put(record.id, record)
        except BaseException:
            self.abort_now()
            final.unlink(missing_ok=True)
            raise
        self.abort_now()  # closes (and unlocks) the file; its temporary name is gone already
        return record

    def abort_now(self) -> None:
        """Synchronous, so it also runs while the request task is being cancelled."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()
        self._tmp.unlink(missing_ok=True)

    async def abort(self) -> None:
        self.abort_now()


class LocalFSFiles:
    def __init__(self, config: LocalFSFilesConfig, store: KVStore | None = None) -> None:
        self.config = config
        self.root = Path(config.storage_dir).expanduser()
        self.max_file_bytes = config.max_file_bytes
        self._given_store = store
        self.store: KVStore
        self.records: RecordStore[StoredFile]

    async def initialize(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        self.store = self._given_store or SqliteKVStore(self.root / "files.db")
        if self._given_store is not None:
            # An older version kept the metadata beside the content: import it once, before the
            # clean-up below would take those files' content for leftovers.
            await import_sqlite_file(self.root / "files.db", self.store)
        self.records = RecordStore(self.store, StoredFile, kind="file")
        await self.list_all()  # logs records that no longer validate, once, at start-up
        known = set(await self.records.keys())  # unreadable records keep their content until deleted
        removed = 0
        for path in await asyncio.to_thread(self._leftovers, known):
            if _ID.fullmatch(path.name) and await self.records.exists(path.name):
                continue  # its upload finished between the listing and the lock
            await asyncio.to_thread(path.unlink, missing_ok=True)
            removed += 1
        if removed:
            log.info("Removed %d leftover(s) of interrupted uploads or deletes in %s", removed, self.root)

    def _leftovers(self, known: set[str]) -> list[Path]:
        """Temporary files and content without metadata that no live upload holds."""
        found = []
        for path in self.root.iterdir():
            name = path.name
            leftover = name.startswith(_TMP_PREFIX) or (_ID.fullmatch(name) and name not in known)
            if leftover and path.is_file() and _abandoned(path):
                found.append(path)
        return found

    async def shutdown(self) -> None:
        if self._given_store is None:  # the stack closes its own database
            await self.store.close()

    async def health(self) -> dict[str, str]:
        ok = await asyncio.to_thread(os.access, self.root, os.W_OK)
        return {"status": "OK"} if ok else {"status": "Error", "message": f"{self.root} is not writable"}

    def content_path(self, file_id: str) -> Path:
        return self.root / file_id

    # --- uploads -------------------------------------------------------------------------------

    async def begin_upload(self) -> _Upload:
        tmp = self.root / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        fh = await asyncio.to_thread(open, tmp, "xb")
        _lock(fh)
        return _Upload(self, tmp, fh)

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, file_id: str) -> StoredFile:
        if not _ID.fullmatch(file_id):
            raise OpenAIFileNotFoundError(file_id)
        return await self.records.require(file_id, lambda: OpenAIFileNotFoundError(file_id))

    async def list_all(self) -> list[StoredFile]:
        return await self.records.list()

    async def _missing_content(self, file_id: str) -> StackError:
        if not await self.records.exists(file_id):
            return OpenAIFileNotFoundError(file_id)  # deleted meanwhile
        log.error("File %s has metadata but no content at %s", file_id, self.content_path(file_id))
        return StackError(f"The content of file '{file_id}' is missing from storage.")

    async def read(self, file_id: str) -> bytes:
        await self.get(file_id)
        try:
            return await asyncio.to_thread(self.content_path(file_id).read_bytes)
        except FileNotFoundError:
            raise await self._missing_content(file_id) from None

    async def open_stream(self, file_id: str, chunk_size: int) -> tuple[StoredFile, AsyncIterator[bytes]]:
        record = await self.get(file_id)
        try:
            # Opened now: a delete from here on unlinks the name, not what is being sent.
            fh = await asyncio.to_thread(open, self.content_path(file_id), "rb")
        except FileNotFoundError:
            raise await self._missing_content(file_id) from None

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while data := await asyncio.to_thread(fh.read, chunk_size):
                    yield data
            finally:
                fh.close()

        return record, chunks()

    # --- deletes -------------------------------------------------------------------------------

    async def delete(self, file_id: str) -> None:
        # Works on a record that no longer reads, too: that is how it is removed.
        if not _ID.fullmatch(file_id) or not await self.records.exists(file_id):
            raise OpenAIFileNotFoundError(file_id)
        # Metadata first: the file disappears at once; content left by a crash here is swept at start.
        await self.records.delete(file_id)
        await asyncio.to_thread(self.content_path(file_id).unlink, missing_ok=True)
