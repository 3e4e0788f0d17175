"""What a document is: its content type (declared, else sniffed from its bytes and URL) and charset."""

from __future__ import annotations

import codecs
import mimetypes
import posixpath
import urllib.parse

SUPPORTED = "plain text, Markdown, HTML, PDF, JSON and CSV"

# Content types that say nothing about the content: sniff instead.
GENERIC = frozenset(
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


def resolve_mime_type(data: bytes, *declared: str | None, url: str | None = None) -> tuple[str, str | None]:
    """(base type, charset): the first specific declared type, else a guess from the bytes and URL."""
    charset = None
    base = ""
    for value in declared:
        candidate, candidate_charset = parse_mime(value)
        charset = charset or candidate_charset
        if not base and candidate not in GENERIC:
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
    if by_suffix and supported(by_suffix):
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


def parse_mime(value: str | None) -> tuple[str, str | None]:
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


def with_charset(base: str, charset: str | None) -> str:
    return f"{base}; charset={charset}" if charset else base


def is_html(base: str) -> bool:
    return base in ("text/html", "application/xhtml+xml")


def is_json(base: str) -> bool:
    return base == "application/json" or base.endswith("+json")


def is_text(base: str) -> bool:
    """Read as it is: text/* (Markdown, CSV, ...) except HTML, and a few text-like application types."""
    if is_html(base):
        return False
    return base.startswith("text/") or base in _TEXT_APPLICATION or base.endswith("+xml")


def supported(base: str) -> bool:
    return base == "application/pdf" or is_html(base) or is_json(base) or is_text(base)


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
