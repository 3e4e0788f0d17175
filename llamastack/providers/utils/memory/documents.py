"""Turning RAG documents into plain text: inline text, content items, data URLs and http(s) URLs.

Failures are typed so the server can answer 4xx: every one is a `DocumentError` (400), with
`UnsupportedDocumentError` (400), `DocumentTooLargeError` (413) and `DocumentFetchError` (400)
for the cases a client may want to tell apart.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import io
import json
import mimetypes
import posixpath
import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from llamastack.stack.outbound import OutboundPolicy

MAX_REDIRECTS = 5
SUPPORTED = "plain text, Markdown, HTML, PDF, JSON and CSV"

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?[;,]", re.IGNORECASE)  # "Data: in 2023, ..." is text
_FETCH_HEADERS = {
    "User-Agent": "llamastack-rag/0.1",
    "Accept": "text/html,application/xhtml+xml,application/pdf,text/plain;q=0.9,*/*;q=0.5",
}
# Content types that say nothing about the content: sniff instead.
_GENERIC = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/unknown",
        "application/x-download",
        "application/force-download",
    }
)
_ALIASES = {
    "text/x-markdown": "text/markdown",
    "application/x-pdf": "application/pdf",
    "text/x-csv": "text/csv",
    "application/csv": "text/csv",
    "text/json": "application/json",
}
_TEXT_APPLICATION = frozenset(
    {
        "application/xml",
        "application/javascript",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
    }
)
_SUFFIXES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".htm": "text/html",
    ".html": "text/html",
    ".xhtml": "application/xhtml+xml",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
}
# Binary formats recognised only to name them in the error.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\xd0\xcf\x11\xe0", "application/x-ole-storage"),
    (b"{\\rtf", "application/rtf"),
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Labels that, as in browsers, mean a superset in practice.
_CHARSET_ALIASES = {"us-ascii": "utf-8", "ascii": "utf-8", "iso-8859-1": "cp1252", "latin-1": "cp1252"}
_CONTROL_BYTES = bytes([*range(0, 8), 11, *range(14, 27), *range(28, 32)])


class DocumentError(ValueError):
    """The document cannot be turned into text (400)."""


class UnsupportedDocumentError(DocumentError):
    """The content type or URL scheme is not supported (400)."""


class DocumentTooLargeError(DocumentError):
    """The document is larger than the configured limit (413)."""


class DocumentFetchError(DocumentError):
    """The document URL could not be fetched: network error, timeout or bad status (400)."""


@dataclass
class LoadedDocument:
    text: str
    mime_type: str
    source: str | None  # the URL, "inline" or "data-url"


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
    if hasattr(content, "model_dump"):
        content = content.model_dump()
    if isinstance(content, dict) and "uri" in content:
        uri = content["uri"]
        if not isinstance(uri, str):
            raise DocumentError("content.uri must be a string.")
        return await _load_uri(uri.strip(), mime_type, outbound, max_bytes, timeout_s)
    if isinstance(content, str):
        candidate = content.strip()
        if _DATA_URL.match(candidate) or _URL.fullmatch(candidate):
            return await _load_uri(candidate, mime_type, outbound, max_bytes, timeout_s)
        return await _load_text(content, mime_type, max_bytes)
    if isinstance(content, dict | list):
        return await _load_text(_items_text(content), mime_type, max_bytes)
    raise DocumentError(
        "Unsupported document content: expected a string, a text item, a list of text items "
        f"or {{'uri': ...}}, got {type(content).__name__}."
    )


def extract_text(data: bytes, mime_type: str) -> str:
    """Plain text from a document's bytes; `mime_type` may carry a charset parameter."""
    base, charset = resolve_mime_type(data, mime_type)
    if base == "application/pdf":
        text = _pdf_to_text(data)
    elif _is_html(base):
        text = _html_to_text(data, charset)
    elif _is_json(base):
        text = _json_to_text(decode_text(data, charset))
    elif _is_text(base):
        text = decode_text(data, charset)
    else:
        raise UnsupportedDocumentError(f"Unsupported document type '{base}'; supported: {SUPPORTED}.")
    return _clean(text)


def resolve_mime_type(data: bytes, *declared: str | None, url: str | None = None) -> tuple[str, str | None]:
    """(base type, charset): the first specific declared type, else a guess from the bytes and URL."""
    charset = None
    base = ""
    for value in declared:
        candidate, candidate_charset = _parse_mime(value)
        charset = charset or candidate_charset
        if not base and candidate not in _GENERIC:
            base = candidate
    if data.startswith(b"%PDF-"):
        return "application/pdf", None  # whatever was declared: a PDF read as text is garbage
    return base or guess_mime_type(data, url), charset


def guess_mime_type(data: bytes, url: str | None = None) -> str:
    """Guesses from magic bytes, then the URL suffix; unknown binary is application/octet-stream."""
    head = data[:1024]
    if b"%PDF-" in head:
        return "application/pdf"
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    by_suffix = _suffix_type(url) if url else None
    if by_suffix and _supported(by_suffix):
        return by_suffix
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if start.startswith((b"<!doctype html", b"<html")) or (start.startswith(b"<") and b"<html" in start):
        return "text/html"
    if _looks_like_text(head):
        return "text/plain"
    return by_suffix or "application/octet-stream"


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Decodes with a BOM, else the declared charset, else UTF-8, falling back to Windows-1252."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    if charset:
        charset = _CHARSET_ALIASES.get(charset.lower(), charset)
        try:
            return data.decode(charset, errors="replace")
        except LookupError:
            pass  # unknown label: guess as if none was given
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace")


# --- content shapes ---------------------------------------------------------------------------


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


async def _load_text(text: str, mime_type: str | None, max_bytes: int) -> LoadedDocument:
    size = len(text) if text.isascii() else len(text.encode("utf-8", errors="surrogatepass"))
    _check_size(size, max_bytes)
    base, _ = _parse_mime(mime_type)
    base = "text/plain" if base in _GENERIC else base
    if base == "application/pdf":
        raise UnsupportedDocumentError(
            "A PDF cannot be sent as inline text; send it as a data URL (data:application/pdf;base64,...) "
            "or an http(s) URL."
        )
    if _is_text(base):
        return LoadedDocument(_clean(text), base, "inline")
    data = _clean(text).encode("utf-8")
    return LoadedDocument(await _extract(data, f"{base}; charset=utf-8"), base, "inline")


async def _load_uri(
    uri: str,
    mime_type: str | None,
    outbound: OutboundPolicy | None,
    max_bytes: int,
    timeout_s: float,
) -> LoadedDocument:
    scheme = uri.partition(":")[0].lower() if ":" in uri else ""
    if scheme == "data":
        data, media = _decode_data_url(uri, max_bytes)
        base, charset = resolve_mime_type(data, mime_type, media)
        return LoadedDocument(await _extract(data, _with_charset(base, charset)), base, "data-url")
    if scheme in ("http", "https"):
        data, content_type, final_url = await _fetch(uri, outbound, max_bytes, timeout_s)
        base, charset = resolve_mime_type(data, mime_type, content_type, url=final_url)
        return LoadedDocument(await _extract(data, _with_charset(base, charset)), base, uri)
    shown = f"scheme '{scheme}'" if scheme else f"'{uri[:80]}'"
    raise UnsupportedDocumentError(
        f"Unsupported document URL {shown}: documents can be http(s) or data URLs."
    )


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
        _check_size(len(data), max_bytes)
        return data, media
    payload = re.sub(r"\s+", "", urllib.parse.unquote(payload))
    _check_size(len(payload) * 3 // 4, max_bytes)
    payload += "=" * (-len(payload) % 4)
    altchars = b"-_" if "-" in payload or "_" in payload else None
    try:
        return base64.b64decode(payload, altchars=altchars, validate=True), media
    except binascii.Error as exc:
        raise DocumentError(f"Invalid base64 in data URL: {exc}.") from None


# --- fetching ---------------------------------------------------------------------------------


async def _fetch(
    url: str, outbound: OutboundPolicy | None, max_bytes: int, timeout_s: float
) -> tuple[bytes, str | None, str]:
    """(body, Content-Type, final URL) of a GET, with a total deadline and a size cap."""
    from llamastack.stack.outbound import OutboundPolicy

    policy = outbound or OutboundPolicy()
    try:
        async with asyncio.timeout(timeout_s):
            async with policy.async_client(
                timeout=timeout_s, follow_redirects=True, max_redirects=MAX_REDIRECTS
            ) as client:
                return await _get(client, url, max_bytes)
    except (TimeoutError, httpx.TimeoutException):
        raise DocumentFetchError(f"Fetching {url} timed out after {timeout_s:g} s.") from None
    except httpx.TooManyRedirects:
        raise DocumentFetchError(f"Fetching {url}: too many redirects.") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DocumentFetchError(f"Could not fetch {url}: {exc or type(exc).__name__}.") from None


async def _get(client: httpx.AsyncClient, url: str, max_bytes: int) -> tuple[bytes, str | None, str]:
    async with client.stream("GET", url, headers=_FETCH_HEADERS, follow_redirects=True) as response:
        if not response.is_success:
            status = f"{response.status_code} {response.reason_phrase}".strip()
            raise DocumentFetchError(f"Fetching {url} failed: HTTP {status}.")
        declared = response.headers.get("content-length", "")
        if declared.isdigit():
            _check_size(int(declared), max_bytes)
        body = bytearray()
        async for piece in response.aiter_bytes():  # decompressed: the cap also stops zip bombs
            body += piece
            _check_size(len(body), max_bytes, at_least=True)
        return bytes(body), response.headers.get("content-type"), str(response.url)


# --- extraction -------------------------------------------------------------------------------


async def _extract(data: bytes, mime_type: str) -> str:
    """extract_text, off the event loop unless the document is small."""
    if len(data) < 64 * 1024:
        return extract_text(data, mime_type)
    return await asyncio.to_thread(extract_text, data, mime_type)


def _pdf_to_text(data: bytes) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            _decrypt(reader)
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        raise DocumentError(f"Could not read the PDF: {type(exc).__name__}: {exc}") from None
    text = "\n\n".join(page for page in pages if page)
    if not text:
        raise DocumentError(
            "The PDF has no extractable text (scanned pages need OCR, which is not supported)."
        )
    return text


def _decrypt(reader: Any) -> None:
    """Opens PDFs encrypted with an empty user password (permissions only); others fail."""
    try:
        opened = reader.decrypt("")
    except Exception as exc:  # e.g. AES without the cryptography package
        raise DocumentError(f"The PDF is encrypted and could not be decrypted: {exc}") from None
    if not opened:
        raise DocumentError("The PDF is encrypted with a password; send an unencrypted copy.")


_DROP_TAGS = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "header",
        "footer",
        "svg",
        "iframe",
        "object",
        "canvas",
    }
)
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl", "section"}
    | {"article", "main", "aside", "figure", "form", "fieldset", "details", "address", "hr", "title"}
)
_LINE_TAGS = frozenset(
    {"div", "li", "tr", "dt", "dd", "caption", "figcaption", "summary", "legend", "option"}
)
_SPACES = re.compile(r"\s+")


def _html_to_text(data: bytes, charset: str | None) -> str:
    """Visible text with paragraphs as blank lines, blocks as lines and runs of spaces collapsed."""
    from bs4 import BeautifulSoup, CData, NavigableString, Tag
    from bs4.element import PreformattedString

    soup = BeautifulSoup(data, "html.parser", from_encoding=charset)
    out = _TextBuilder()
    # Iterative walk (deep documents must not hit the recursion limit); an int is a pending break.
    stack: list[tuple[Any, bool]] = [(soup, False)]
    while stack:
        node, in_pre = stack.pop()
        if isinstance(node, int):
            out.newlines(node)
        elif isinstance(node, NavigableString):
            if isinstance(node, CData) or not isinstance(node, PreformattedString):
                out.text(str(node), pre=in_pre)
        elif isinstance(node, Tag) and node.name not in _DROP_TAGS:
            if node.name == "br":
                out.line_break()
                continue
            if node.name in ("td", "th") and node.find_previous_sibling(("td", "th")):
                out.text(" | ")
            gap = 2 if node.name in _PARAGRAPH_TAGS else 1 if node.name in _LINE_TAGS else 0
            if gap:
                out.newlines(gap)
                stack.append((gap, in_pre))
            in_pre = in_pre or node.name == "pre"
            stack.extend((child, in_pre) for child in reversed(node.contents))
    return out.result()


class _TextBuilder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = 0  # newlines to write before the next text

    def newlines(self, count: int) -> None:
        self.pending = max(self.pending, count)

    def line_break(self) -> None:
        self.pending = min(self.pending + 1, 2)

    def text(self, value: str, *, pre: bool = False) -> None:
        if not pre:
            value = _SPACES.sub(" ", value)
            if self.pending or not self.parts or self.parts[-1].endswith((" ", "\n")):
                value = value.lstrip(" ")
            if not value:
                return
        if self.pending and self.parts:
            self.parts[-1] = self.parts[-1].rstrip(" ")
            self.parts.append("\n" * self.pending)
        self.pending = 0
        self.parts.append(value)

    def result(self) -> str:
        text = re.sub(r"[ \t]+\n", "\n", "".join(self.parts))
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def _json_to_text(text: str) -> str:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DocumentError(f"Invalid JSON document: {exc}") from None
    return json.dumps(value, indent=2, ensure_ascii=False)


# --- helpers ----------------------------------------------------------------------------------


def _parse_mime(value: str | None) -> tuple[str, str | None]:
    """'Text/HTML; charset="UTF-8"' -> ('text/html', 'UTF-8'); aliases resolved."""
    if not value:
        return "", None
    base, *params = value.split(";")
    charset = None
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip("\"'") or None
    base = base.strip().lower()
    return _ALIASES.get(base, base), charset


def _with_charset(base: str, charset: str | None) -> str:
    return f"{base}; charset={charset}" if charset else base


def _is_html(base: str) -> bool:
    return base in ("text/html", "application/xhtml+xml")


def _is_json(base: str) -> bool:
    return base == "application/json" or base.endswith("+json")


def _is_text(base: str) -> bool:
    """Read as it is: text/* (Markdown, CSV, ...) except HTML, and a few text-like application types."""
    if _is_html(base):
        return False
    return base.startswith("text/") or base in _TEXT_APPLICATION or base.endswith("+xml")


def _supported(base: str) -> bool:
    return base == "application/pdf" or _is_html(base) or _is_json(base) or _is_text(base)


def _suffix_type(url: str) -> str | None:
    path = urllib.parse.urlsplit(url).path.lower()
    suffix = posixpath.splitext(path)[1]
    if not suffix:
        return None
    return _SUFFIXES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0]


def _looks_like_text(head: bytes) -> bool:
    """No NUL bytes and hardly any control characters (UTF-16/32 with a BOM is text too)."""
    if head.startswith(tuple(bom for bom, _ in _BOMS)):
        return True
    if b"\x00" in head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls <= len(head) // 100


def _check_size(size: int, max_bytes: int, *, at_least: bool = False) -> None:
    if size > max_bytes:
        shown = f"more than {max_bytes}" if at_least else str(size)
        raise DocumentTooLargeError(f"The document is {shown} bytes; the limit is {max_bytes} bytes.")


def _clean(text: str) -> str:
    """Unix newlines, no NUL characters, no lone surrogates (they cannot be stored as UTF-8)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
