"""Plain text from a document's bytes: PDF, HTML, JSON and text in any common charset.

Parsing is CPU work (a large PDF takes seconds): callers on the event loop use `extract`, which
runs `extract_text` in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

from llamastack.stack.library_imports import library_imports

from ..errors import DocumentError, UnsupportedDocumentError
from .mime import SUPPORTED, decode_text, is_html, is_json, is_text, resolve_mime_type


async def extract(data: bytes, mime_type: str) -> str:
    """extract_text, off the event loop."""
    return await asyncio.to_thread(extract_text, data, mime_type)


def extract_text(data: bytes, mime_type: str) -> str:
    """Plain text from a document's bytes; `mime_type` may carry a charset parameter."""
    base, charset = resolve_mime_type(data, mime_type)
    if base == "application/pdf":
        text = _pdf_to_text(data)
    elif is_html(base):
        text = _html_to_text(data, charset)
    elif is_json(base):
        text = _json_to_text(decode_text(data, charset))
    elif is_text(base):
        text = decode_text(data, charset)
    else:
        raise UnsupportedDocumentError(f"Unsupported document type '{base}'; supported: {SUPPORTED}.")
    return clean(text)


def clean(text: str) -> str:
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


# --- PDF --------------------------------------------------------------------------------------


def _pdf_to_text(data: bytes) -> str:
    with library_imports:
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


# --- HTML -------------------------------------------------------------------------------------

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
    with library_imports:
        from bs4 import BeautifulSoup
        from bs4.element import CData, NavigableString, PreformattedString, Tag

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


# --- JSON -------------------------------------------------------------------------------------


def _json_to_text(text: str) -> str:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DocumentError(f"Invalid JSON document: {exc}") from None
    return json.dumps(value, indent=2, ensure_ascii=False)
