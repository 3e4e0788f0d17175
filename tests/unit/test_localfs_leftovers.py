"""The localfs files provider at start-up: crash leftovers go at once, uploads under way stay."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llamastack.providers.files.localfs.config import LocalFSFilesConfig
from llamastack.providers.files.localfs.provider import LocalFSFiles
from llamastack.stack.apis.files import OpenAIFilePurpose

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="upload locks are POSIX file locks")


async def _open(root: Path) -> LocalFSFiles:
    files = LocalFSFiles(LocalFSFilesConfig(storage_dir=str(root)))
    await files.initialize()
    return files


async def test_fresh_leftovers_of_a_dead_upload_are_removed_at_start(tmp_path: Path) -> None:
    files = await _open(tmp_path)
    kept = await files.begin_upload()
    await kept.write(b"kept")
    stored = await kept.commit(
        filename="kept.txt", purpose=OpenAIFilePurpose.assistants, content_type="text/plain"
    )
    await files.shutdown()
    # What a kill -9 leaves: a temporary file and content whose metadata was never written,
    # both only a moment old and held by no process.
    (tmp_path / ".upload-0123456789abcdef").write_bytes(b"half an upload")
    (tmp_path / f"file-{'ab' * 16}").write_bytes(b"content without metadata")

    files = await _open(tmp_path)
    try:
        names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("files.db"))
        assert names == [stored.id]
        assert await files.read(stored.id) == b"kept"
    finally:
        await files.shutdown()


async def test_an_upload_under_way_elsewhere_is_not_swept(tmp_path: Path) -> None:
    writer = await _open(tmp_path)
    upload = await writer.begin_upload()
    await upload.write(b"still arriving")
    [tmp] = [p for p in tmp_path.iterdir() if p.name.startswith(".upload-")]

    other = await _open(tmp_path)  # a second start on the same folder while the upload is open
    try:
        assert tmp.exists()
        stored = await upload.commit(
            filename="a.bin", purpose=OpenAIFilePurpose.assistants, content_type="x/y"
        )
        assert not tmp.exists()
        assert await other.read(stored.id) == b"still arriving"
    finally:
        await other.shutdown()
        await writer.shutdown()
