"""The Files API router: listing, lookups and uploads over the one configured files provider.

Other APIs (vector stores) reach files through `get_file` and `read_content`. With API keys, a
file is seen only by the key that uploaded it (and admin keys); to others it does not exist.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator

from .. import access
from ..apis.common import Order
from ..apis.files import (
    FilesProvider,
    FileUpload,
    ListOpenAIFileResponse,
    OpenAIFileDeleteResponse,
    OpenAIFileObject,
    OpenAIFilePurpose,
    StoredFile,
)
from ..errors import BadRequestError, OpenAIFileNotFoundError, UnreadableRecordError
from ..pagination import paginate

MAX_LIST_LIMIT = 10_000
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
# Common document types that the platform's mimetypes table may not know.
_EXTRA_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".jsonl": "application/jsonl",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".csv": "text/csv",
}


def parse_purpose(value: str | None) -> OpenAIFilePurpose:
    allowed = ", ".join(p.value for p in OpenAIFilePurpose)
    if not value:
        raise BadRequestError(f"The upload has no 'purpose' field. Allowed purposes: {allowed}.")
    try:
        return OpenAIFilePurpose(value)
    except ValueError:
        raise BadRequestError(f"purpose '{value}' is not supported. Allowed purposes: {allowed}.") from None


def clean_filename(name: str | None) -> str:
    """The last path component (browsers may send a full path); 'upload' when there is none."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:255] or "upload"


def content_type_for(filename: str, declared: str | None) -> str:
    """The uploader's declared type when it says something specific, else a guess from the name."""
    declared = (declared or "").strip()
    if declared.split(";")[0].strip().lower() not in _GENERIC_TYPES:
        return declared
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    guessed = _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename, strict=False)[0]
    return guessed or "application/octet-stream"


class FilesRouter:
    def __init__(self, provider: FilesProvider) -> None:
        self.provider = provider

    async def _stored(self, file_id: str) -> StoredFile:
        stored = await self.provider.get(file_id)
        if not access.can_see(stored.owner):
            raise OpenAIFileNotFoundError(file_id)
        return stored

    @property
    def max_file_bytes(self) -> int:
        return self.provider.max_file_bytes

    # --- uploads -------------------------------------------------------------------------------

    async def begin_upload(self) -> FileUpload:
        return await self.provider.begin_upload()

    async def finish_upload(
        self,
        upload: FileUpload,
        *,
        filename: str | None,
        purpose: OpenAIFilePurpose,
        declared_content_type: str | None,
    ) -> OpenAIFileObject:
        name = clean_filename(filename)
        stored = await upload.commit(
            filename=name,
            purpose=purpose,
            content_type=content_type_for(name, declared_content_type),
            owner=access.owner_for_new_record(),
        )
        return stored.to_openai()

    # --- reads ---------------------------------------------------------------------------------

    async def list_files(
        self,
        after: str | None = None,
        limit: int = MAX_LIST_LIMIT,
        order: Order = Order.desc,
        purpose: OpenAIFilePurpose | None = None,
    ) -> ListOpenAIFileResponse:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequestError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}.")
        everything = sorted(
            access.filter_visible(await self.provider.list_all(), lambda f: f.owner),
            key=lambda f: (f.created_ns, f.id),
            reverse=order == Order.desc,
        )
        # The cursor's place is in the whole ordering, so it works with any purpose filter.
        page = paginate(
            everything,
            limit=limit,
            after=after,
            keep=None if purpose is None else lambda f: f.purpose == purpose,
            unknown_cursor=lambda name, ident: (
                f"{name}: file '{ident}' not found; pass the last_id of the previous page."
            ),
        )
        return ListOpenAIFileResponse(
            data=[f.to_openai() for f in page.data],
            has_more=page.has_more,
            first_id=page.first_id,
            last_id=page.last_id,
        )

    async def get_file(self, file_id: str) -> OpenAIFileObject:
        return (await self._stored(file_id)).to_openai()

    async def read_content(self, file_id: str) -> tuple[bytes, str]:
        """The file's bytes and content type (404 if unknown)."""
        stored = await self._stored(file_id)
        return await self.provider.read(file_id), stored.content_type

    async def stream_content(
        self, file_id: str, chunk_size: int = 256 * 1024
    ) -> tuple[StoredFile, AsyncIterator[bytes]]:
        await self._stored(file_id)
        return await self.provider.open_stream(file_id, chunk_size)

    # --- writes --------------------------------------------------------------------------------

    async def delete_file(self, file_id: str) -> OpenAIFileDeleteResponse:
        try:
            await self._stored(file_id)
        except UnreadableRecordError:
            # Its owner cannot be read either: only an admin (or a server without keys) removes it.
            principal = access.current()
            if principal is not None and not principal.admin:
                raise
        await self.provider.delete(file_id)
        return OpenAIFileDeleteResponse(id=file_id, deleted=True)
