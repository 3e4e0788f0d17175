"""A RAG document's content as text: inline text, content items, data URLs and http(s) URLs.

Only the fetch runs on the event loop; decoding, cleaning and parsing run in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..errors import DocumentError, UnsupportedDocumentError
from ..outbound import OutboundPolicy
from .extract import clean, extract_text
from .fetch import check_size, fetch
from .mime import GENERIC, SUPPORTED, is_text, parse_mime, resolve_mime_type, with_charset

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?[;,]", re.IGNORECASE)  # "Data: in 2023, ..." is text


@dataclass
class LoadedDocument:
    text: str
    mime_type: str
    source: str | None  # the URL, "inline" or "data-url"


@dataclass
class Source:
    """A document's content once anything remote is fetched; turned into text by `decode_source`."""

    content: object
    uri: str | None
    fetched: tuple[bytes, str | None, str] | None  # (body, Content-Type, final URL) of an http(s) URL


async def load_document(
    content: object,
    mime_type: str | None = None,
    *,
    outbound: OutboundPolicy | None = None,
    max_bytes: int = 25 * 2**20,
    timeout_s: float = 20.0,
) -> LoadedDocument:
    """Loads a RAG document's content: text, text items, a data URL or an http(s) URL.

    URLs are fetched through `outbound` (the stack's policy; by default public addresses only),
    which checks every connection, redirects included, and raises `OutboundRefusedError` (400).
    `mime_type` wins over a URL's Content-Type, which wins over sniffing; a body starting with
    `%PDF-` is always read as a PDF.
    """
    source = await fetch_source(content, outbound=outbound, max_bytes=max_bytes, timeout_s=timeout_s)
    return await asyncio.to_thread(decode_source, source, mime_type, max_bytes)


async def fetch_source(
    content: object, *, outbound: OutboundPolicy | None, max_bytes: int, timeout_s: float
) -> Source:
    """The I/O half of `load_document`: fetches an http(s) URL; anything else is returned as it is."""
    if hasattr(content, "model_dump"):
        content = content.model_dump()
    uri = _uri(content)
    if uri is not None and _scheme(uri) in ("http", "https"):
        return Source(content, uri, await fetch(uri, outbound, max_bytes, timeout_s))
    return Source(content, uri, None)


def decode_source(source: Source, mime_type: str | None, max_bytes: int) -> LoadedDocument:
    """The CPU half of `load_document` (decoding, cleaning, parsing), for a worker thread."""
    if source.fetched is not None:
        data, content_type, final_url = source.fetched
        return _from_bytes(data, source.uri or final_url, mime_type, content_type, url=final_url)
    return _load_local(source.content, source.uri, mime_type, max_bytes)


def _uri(content: object) -> str | None:
    """The URL the content stands for, if it is one ({'uri': ...}, or a string that is a URL)."""
    if isinstance(content, dict) and "uri" in content:
        uri = content["uri"]
        if not isinstance(uri, str):
            raise DocumentError("content.uri must be a string.")
        return uri.strip()
    if isinstance(content, str):
        candidate = content.strip()
        if _DATA_URL.match(candidate) or _URL.fullmatch(candidate):
            return candidate
    return None


def _scheme(uri: str) -> str:
    return uri.partition(":")[0].lower() if ":" in uri else ""


def _load_local(content: object, uri: str | None, mime_type: str | None, max_bytes: int) -> LoadedDocument:
    """Everything but a fetch: CPU work, run in a worker thread."""
    if uri is not None:
        scheme = _scheme(uri)
        if scheme == "data":
            data, media = _decode_data_url(uri, max_bytes)
            return _from_bytes(data, "data-url", mime_type, media)
        shown = f"scheme '{scheme}'" if scheme else f"'{uri[:80]}'"
        raise UnsupportedDocumentError(
            f"Unsupported document URL {shown}: documents can be http(s) or data URLs."
        )
    if isinstance(content, str):
        return _load_text(content, mime_type, max_bytes)
    if isinstance(content, dict | list):
        return _load_text(_items_text(content), mime_type, max_bytes)
    raise DocumentError(
        "Unsupported document content: expected a string, a text item, a list of text items "
        f"or {{'uri': ...}}, got {type(content).__name__}."
    )


def _from_bytes(data: bytes, source: str, *declared: str | None, url: str | None = None) -> LoadedDocument:
    base, charset = resolve_mime_type(data, *declared, url=url)
    return LoadedDocument(extract_text(data, with_charset(base, charset)), base, source)


def _items_text(content: dict[str, Any] | list[Any]) -> str:
    """The text of one content item or a list of them, items separated by a blank line."""
    texts = []
    for entry in content if isinstance(content, list) else [content]:
        item = entry.model_dump() if hasattr(entry, "model_dump") else entry
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and (item.get("type") == "image" or "image" in item):
            raise UnsupportedDocumentError(
                f"Image content is not supported in documents; supported: {SUPPORTED}."
            )
        elif (
            isinstance(item, dict)
            and item.get("type", "text") == "text"
            and isinstance(item.get("text"), str)
        ):
            texts.append(item["text"])
        else:
            raise DocumentError(
                "Unsupported content item: expected {'type': 'text', 'text': ...}, "
                f"got {type(item).__name__} {str(item)[:80]!r}."
            )
    return "\n\n".join(texts)


def _load_text(text: str, mime_type: str | None, max_bytes: int) -> LoadedDocument:
    size = len(text) if text.isascii() else len(text.encode("utf-8", errors="surrogatepass"))
    check_size(size, max_bytes)
    base, _ = parse_mime(mime_type)
    base = "text/plain" if base in GENERIC else base
    if base == "application/pdf":
        raise UnsupportedDocumentError(
            "A PDF cannot be sent as inline text; send it as a data URL (data:application/pdf;base64,...) "
            "or an http(s) URL."
        )
    if is_text(base):
        return LoadedDocument(clean(text), base, "inline")
    data = clean(text).encode("utf-8")
    return LoadedDocument(extract_text(data, f"{base}; charset=utf-8"), base, "inline")


def _decode_data_url(url: str, max_bytes: int) -> tuple[bytes, str]:
    """(bytes, media type) of `data:[<media type>][;base64],<data>`."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise DocumentError("Malformed data URL: no ',' between the media type and the data.")
    params = header.split(";")
    is_base64 = params[-1].strip().lower() == "base64"
    media = ";".join(params[:-1] if is_base64 else params).strip() or "text/plain"
    if not is_base64:
        data = urllib.parse.unquote_to_bytes(payload)
        check_size(len(data), max_bytes)
        return data, media
    payload = re.sub(r"\s+", "", urllib.parse.unquote(payload))
    check_size(len(payload) * 3 // 4, max_bytes)
    payload += "=" * (-len(payload) % 4)
    altchars = b"-_" if "-" in payload or "_" in payload else None
    try:
        return base64.b64decode(payload, altchars=altchars, validate=True), media
    except binascii.Error as exc:
        raise DocumentError(f"Invalid base64 in data URL: {exc}.") from None
