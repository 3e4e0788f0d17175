"""OpenAI-compatible Files routes.

Uploads are parsed as they arrive (python-multipart's streaming parser): the file part goes
straight to the provider in chunks, so a request past the size limit is stopped there and never
held in memory or spooled whole. A Content-Length that is already too large is refused before
reading anything.
"""

from __future__ import annotations

import email.message
import email.utils
import logging
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from ...apis.common import Order
from ...apis.files import (
    Files,
    FileUpload,
    ListOpenAIFileResponse,
    OpenAIFileDeleteResponse,
    OpenAIFileObject,
    OpenAIFilePurpose,
)
from ...errors import BadRequestError, PayloadTooLargeError
from ...routing.files import MAX_LIST_LIMIT, parse_purpose
from ..deps import files_api, json_response
from ..route import StackRoute

log = logging.getLogger(__name__)
router = APIRouter(tags=["Files"], route_class=StackRoute)
_BASE = "/v1/openai/v1/files"
_FILE = _BASE + "/{file_id}"

# Room for the multipart framing and the small fields around the file in a Content-Length.
_FORM_OVERHEAD = 64 * 1024
_MAX_FIELD_BYTES = 4096
_MAX_PARTS = 16
_HOW = "Upload as multipart/form-data with a 'file' part (the content) and a 'purpose' field."


_files = files_api


class _Part:
    __slots__ = ("content_type", "filename", "header_field", "header_value", "headers", "name", "value")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.name = ""
        self.filename: str | None = None
        self.content_type: str | None = None
        self.value = bytearray()  # small fields only; the file's bytes go to the provider


class _UploadForm:
    """Feeds the body to the multipart parser; callbacks are synchronous, file bytes are queued
    and written to the provider after each chunk."""

    def __init__(self, files: Files, boundary: bytes) -> None:
        self.files = files
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._part.header_field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._part.header_value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )
        self._part = _Part()
        self.parts = 0
        self.file_part: _Part | None = None
        self.purpose: OpenAIFilePurpose | None = None
        self.purpose_seen = False
        self.upload: FileUpload | None = None
        self.pending: list[bytes] = []
        self.ended = False

    # parser callbacks -------------------------------------------------------------------------

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > _MAX_PARTS:
            raise BadRequestError(f"Too many parts in the upload. {_HOW}")
        self._part = _Part()

    def _header_end(self) -> None:
        part = self._part
        part.headers[part.header_field.decode("latin-1").strip().lower()] = _header_text(part.header_value)
        part.header_field.clear()
        part.header_value.clear()

    def _headers_finished(self) -> None:
        part = self._part
        part.name, part.filename = _disposition_names(part.headers.get("content-disposition", ""))
        part.content_type = part.headers.get("content-type")
        if part.name == "file":
            if self.file_part is not None:
                raise BadRequestError(f"The upload has more than one 'file' part. {_HOW}")
            self.file_part = part

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part is self.file_part:
            self.pending.append(data[start:end])
            return
        if len(self._part.value) + (end - start) > _MAX_FIELD_BYTES:
            raise BadRequestError(f"Form field '{self._part.name}' is too long. {_HOW}")
        self._part.value.extend(data[start:end])

    def _part_end(self) -> None:
        if self._part.name == "purpose":
            self.purpose_seen = True
            self.purpose = parse_purpose(self._part.value.decode("utf-8", "replace").strip())

    def _end(self) -> None:
        self.ended = True

    # driving ----------------------------------------------------------------------------------

    async def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequestError(f"Malformed multipart body: {exc}. {_HOW}") from None
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            if self.upload is None:
                self.upload = await self.files.begin_upload()
            await self.upload.write(data)

    async def finish(self) -> OpenAIFileObject:
        if not self.ended:
            raise BadRequestError(f"The multipart body ended before its closing boundary. {_HOW}")
        if self.file_part is None:
            raise BadRequestError(f"The upload has no 'file' part. {_HOW}")
        purpose = self.purpose if self.purpose_seen and self.purpose is not None else parse_purpose(None)
        if self.upload is None:  # an empty file
            self.upload = await self.files.begin_upload()
        return await self.files.finish_upload(
            self.upload,
            filename=self.file_part.filename,
            purpose=purpose,
            declared_content_type=self.file_part.content_type,
        )

    async def abort(self) -> None:
        if self.upload is not None:
            await self.upload.abort()


def _header_text(raw: bytes | bytearray) -> str:
    # Clients send non-ASCII file names as raw UTF-8 (HTML5 forms, httpx, requests); old ones Latin-1.
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw).decode("latin-1")


def _disposition_names(value: str) -> tuple[str, str | None]:
    """The part's name and file name from Content-Disposition, RFC 5987 ``filename*`` first."""
    message = email.message.Message()
    message["content-disposition"] = value
    name, plain, extended = "", None, None
    for key, param in message.get_params(header="content-disposition", failobj=[])[1:]:
        if key == "name" and isinstance(param, str):
            name = param
        elif key == "filename" and isinstance(param, tuple):
            extended = email.utils.collapse_rfc2231_value(param)
        elif key == "filename" and plain is None:
            plain = email.utils.unquote(param)
    return name, extended if extended is not None else plain


def _boundary(content_type: str) -> bytes:
    ctype, options = parse_options_header(content_type)
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise BadRequestError(f"Content-Type is '{content_type or 'missing'}'. {_HOW}")
    return options[b"boundary"]


@router.post(
    _BASE,
    response_model=OpenAIFileObject,
    summary="Upload a file that can be used across various endpoints.",
    description="A multipart/form-data request with `file` (the content) and `purpose` (`assistants`).",
    # The body is parsed by hand (streamed to disk), so describe it for the OpenAPI document here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "purpose": {"type": "string", "enum": ["assistants"]},
                        },
                        "required": ["file", "purpose"],
                    }
                }
            },
        }
    },
)
async def upload_file(request: Request) -> Response:
    files = _files(request)
    boundary = _boundary(request.headers.get("content-type", ""))
    limit = files.max_file_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + _FORM_OVERHEAD:
        raise PayloadTooLargeError(
            f"The request is {int(length)} bytes; this server accepts files of at most {limit} bytes "
            f"({limit / 2**20:.1f} MiB)."
        )
    form = _UploadForm(files, boundary)
    try:
        async for chunk in request.stream():
            await form.feed(chunk)
        created = await form.finish()
    except ClientDisconnect:
        await form.abort()
        log.info("A client went away during its upload; nothing was stored.")
        return Response(status_code=499)  # never delivered: the connection is gone
    except BaseException:
        await form.abort()
        raise
    return json_response(created)


@router.get(_BASE, response_model=ListOpenAIFileResponse, summary="List the uploaded files.")
async def list_files(
    request: Request,
    after: str | None = None,
    limit: int = MAX_LIST_LIMIT,
    order: Order = Order.desc,
    purpose: OpenAIFilePurpose | None = None,
) -> Response:
    return json_response(await _files(request).list_files(after, limit, order, purpose))


@router.get(_FILE, response_model=OpenAIFileObject, summary="Returns information about a specific file.")
async def get_file(request: Request, file_id: str) -> Response:
    return json_response(await _files(request).get_file(file_id))


@router.delete(_FILE, response_model=OpenAIFileDeleteResponse, summary="Delete a file.")
async def delete_file(request: Request, file_id: str) -> Response:
    return json_response(await _files(request).delete_file(file_id))


def _disposition(filename: str) -> str:
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get(
    _FILE + "/content",
    response_class=Response,
    summary="Returns the contents of the specified file.",
    responses={200: {"description": "The raw file content.", "content": {"application/octet-stream": {}}}},
)
async def get_file_content(request: Request, file_id: str) -> Response:
    stored, chunks = await _files(request).stream_content(file_id)
    return StreamingResponse(
        chunks,
        headers={
            # Exactly the stored type: media_type= would append a charset to text types.
            "content-type": stored.content_type,
            "content-length": str(stored.bytes),
            "content-disposition": _disposition(stored.filename),
        },
    )
