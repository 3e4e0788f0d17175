"""OpenAI-compatible Files API (/v1/openai/v1/files*), as the v0.2.12 wire contract shapes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from .common import Order


class OpenAIFilePurpose(StrEnum):
    """Valid purpose values for the OpenAI Files API."""

    assistants = "assistants"


class OpenAIFileObject(BaseModel):
    """OpenAI File object as defined in the OpenAI Files API."""

    object: Literal["file"] = "file"
    id: str = Field(description="The file identifier, which can be referenced in the API endpoints")
    bytes: int = Field(description="The size of the file, in bytes")
    created_at: int = Field(description="The Unix timestamp (in seconds) for when the file was created")
    # Files are kept until deleted, so there is no expiry to report.
    expires_at: int | None = Field(
        default=None, description="The Unix timestamp (in seconds) for when the file expires"
    )
    filename: str = Field(description="The name of the file")
    purpose: OpenAIFilePurpose = Field(description="The intended purpose of the file")


class ListOpenAIFileResponse(BaseModel):
    """Response for listing files in OpenAI Files API."""

    data: list[OpenAIFileObject] = Field(description="List of file objects")
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
    object: Literal["list"] = "list"


class OpenAIFileDeleteResponse(BaseModel):
    """Response for deleting a file in OpenAI Files API."""

    id: str = Field(description="The file identifier that was deleted")
    object: Literal["file"] = "file"
    deleted: bool = Field(description="Whether the file was successfully deleted")


class StoredFile(BaseModel):
    """What a files provider keeps about one file besides its content."""

    id: str
    filename: str
    bytes: int
    created_ns: int  # upload time in ns: orders files uploaded within the same second
    purpose: OpenAIFilePurpose
    content_type: str
    owner: str | None = None  # the principal that uploaded it (stack/access.py); never on the wire

    def to_openai(self) -> OpenAIFileObject:
        return OpenAIFileObject(
            id=self.id,
            bytes=self.bytes,
            created_at=self.created_ns // 1_000_000_000,
            filename=self.filename,
            purpose=self.purpose,
        )


class FileUpload(Protocol):
    """Content arriving in chunks; nothing is visible until `commit`, and `abort` leaves no trace."""

    async def write(self, data: bytes) -> None:
        """Appends; raises PayloadTooLargeError past the provider's limit (the caller then aborts)."""
        ...

    async def commit(
        self, *, filename: str, purpose: OpenAIFilePurpose, content_type: str, owner: str | None = None
    ) -> StoredFile: ...

    async def abort(self) -> None: ...


class FilesProvider(Protocol):
    """What a files provider implements: content and records; ownership and listing order are the
    router's business."""

    max_file_bytes: int

    async def begin_upload(self) -> FileUpload: ...
    async def get(self, file_id: str) -> StoredFile: ...
    async def list_all(self) -> list[StoredFile]: ...
    async def delete(self, file_id: str) -> None: ...
    async def read(self, file_id: str) -> bytes: ...
    async def open_stream(self, file_id: str, chunk_size: int) -> tuple[StoredFile, AsyncIterator[bytes]]: ...


class Files(Protocol):
    """The Files API as routes and other APIs (vector stores) call it. With API keys a file is seen
    only by the key that uploaded it (and admin keys); to the others it does not exist (404)."""

    @property
    def max_file_bytes(self) -> int: ...

    async def begin_upload(self) -> FileUpload: ...

    async def finish_upload(
        self,
        upload: FileUpload,
        *,
        filename: str | None,
        purpose: OpenAIFilePurpose,
        declared_content_type: str | None,
    ) -> OpenAIFileObject: ...

    async def list_files(
        self,
        after: str | None = None,
        limit: int = 10_000,
        order: Order = Order.desc,
        purpose: OpenAIFilePurpose | None = None,
    ) -> ListOpenAIFileResponse: ...

    async def get_file(self, file_id: str) -> OpenAIFileObject: ...

    async def read_content(self, file_id: str) -> tuple[bytes, str]:
        """The file's bytes and content type."""
        ...

    async def stream_content(
        self, file_id: str, chunk_size: int = 256 * 1024
    ) -> tuple[StoredFile, AsyncIterator[bytes]]: ...

    async def delete_file(self, file_id: str) -> OpenAIFileDeleteResponse: ...
