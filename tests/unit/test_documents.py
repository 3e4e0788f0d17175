from __future__ import annotations

import base64
import functools
import io
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llamastack.stack.ingestion import (
    DocumentError,
    DocumentFetchError,
    DocumentTooLargeError,
    LoadedDocument,
    UnsupportedDocumentError,
    extract_text,
    guess_mime_type,
    load_document,
)
from llamastack.stack.outbound import OutboundConfig, OutboundPolicy, OutboundRefusedError

DATA = Path(__file__).parent.parent / "data" / "documents"


def make_pdf(*pages: str, user_password: str | None = None) -> bytes:
    """A real PDF with one line of Helvetica text per page, written by pypdf."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    for text in pages:
        page = writer.add_blank_page(612, 792)
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
        page.replace_contents(stream)
    if user_password is not None:
        writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def data_url(data: bytes, media: str) -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


# --- inline content ---------------------------------------------------------------------------


async def test_plain_text_is_kept_as_is() -> None:
    doc = await load_document("Llamas hum.\n\n  Alpacas too.  ")
    assert doc == LoadedDocument(
        text="Llamas hum.\n\n  Alpacas too.  ", mime_type="text/plain", source="inline"
    )


async def test_text_items_and_lists_of_them() -> None:
    doc = await load_document({"type": "text", "text": "one"})
    assert doc.text == "one"
    doc = await load_document([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}])
    assert doc.text == "one\n\ntwo"


async def test_image_items_are_unsupported() -> None:
    image = {"type": "image", "image": {"url": {"uri": "https://example.com/x.png"}}}
    with pytest.raises(UnsupportedDocumentError, match="Image"):
        await load_document([{"type": "text", "text": "caption"}, image])


async def test_other_content_shapes_are_rejected() -> None:
    with pytest.raises(DocumentError, match="int"):
        await load_document(42)
    with pytest.raises(DocumentError, match="content item"):
        await load_document([{"type": "audio", "data": "..."}])


async def test_markdown_is_kept_as_is() -> None:
    markdown = (DATA / "sample.md").read_text()
    doc = await load_document(markdown, "text/markdown")
    assert doc.text == markdown
    assert doc.mime_type == "text/markdown"


async def test_inline_html_is_reduced_to_visible_text() -> None:
    doc = await load_document((DATA / "sample.html").read_text(), "text/html")
    text = doc.text
    for hidden in ("SCRIPT-TEXT", "HEADER-TEXT", "NAV-TEXT", "FOOTER-TEXT", "font-family"):
        assert hidden not in text
    assert text.startswith("Llamas of the Andes\n\nLlamas\n\n")
    assert "The llama is a domesticated South American camelid.\n\n" in text  # whitespace collapsed
    assert "Llamas are social animals\nand live in herds." in text  # <br>
    assert "Wool\nPack animals" in text
    assert "Name | Height\nLlama | 1.8 m" in text
    assert 'def hello():\n    return "llama"' in text  # <pre> keeps its layout
    assert text.endswith("Café & crème, naïve 🦙.")


def test_html_structure_and_entities() -> None:
    html = b"<div>a<div>b</div>c</div><p>  x \n y </p><p></p><p>z</p>"
    assert extract_text(html, "text/html") == "a\nb\nc\n\nx y\n\nz"


async def test_inline_pdf_is_refused_with_a_hint() -> None:
    with pytest.raises(UnsupportedDocumentError, match="data URL"):
        await load_document("%PDF-1.4 ...", "application/pdf")


async def test_inline_text_too_large() -> None:
    with pytest.raises(DocumentTooLargeError, match="limit is 100 bytes"):
        await load_document("é" * 51, max_bytes=100)  # 102 bytes in UTF-8
    assert (await load_document("é" * 50, max_bytes=100)).text == "é" * 50


async def test_newlines_nul_and_lone_surrogates_are_cleaned() -> None:
    doc = await load_document("a\r\nb\rc\x00d \ud83d")
    assert doc.text == "a\nb\ncd \ufffd"


# --- data URLs --------------------------------------------------------------------------------


async def test_base64_data_url_with_charset() -> None:
    doc = await load_document(data_url("Grüße".encode("latin-1"), "text/plain;charset=iso-8859-1"))
    assert doc == LoadedDocument(text="Grüße", mime_type="text/plain", source="data-url")


async def test_percent_encoded_data_url() -> None:
    doc = await load_document("data:,Hello%2C%20llamas%21")
    assert (doc.text, doc.mime_type) == ("Hello, llamas!", "text/plain")
    doc = await load_document({"uri": "data:text/html,<p>Hi%20<b>there</b></p><script>x()</script>"})
    assert (doc.text, doc.mime_type) == ("Hi there", "text/html")


async def test_urlsafe_unpadded_base64() -> None:
    raw = base64.urlsafe_b64encode(b"llama ~~~ ???").decode().rstrip("=")
    assert (await load_document(f"data:text/plain;base64,{raw}")).text == "llama ~~~ ???"


async def test_malformed_data_urls() -> None:
    with pytest.raises(DocumentError, match="Malformed"):
        await load_document("data:text/plain;base64")
    with pytest.raises(DocumentError, match="base64"):
        await load_document("data:text/plain;base64,@@@@")


async def test_data_url_too_large() -> None:
    with pytest.raises(DocumentTooLargeError):
        await load_document(data_url(b"x" * 2000, "text/plain"), max_bytes=1024)
    with pytest.raises(DocumentTooLargeError):
        await load_document("data:," + "x" * 2000, max_bytes=1024)


async def test_mime_type_argument_wins_over_the_data_url() -> None:
    doc = await load_document(data_url(b'{"b": [1, 2]}', "text/plain"), "application/json")
    assert doc.text == '{\n  "b": [\n    1,\n    2\n  ]\n}'


# --- PDFs -------------------------------------------------------------------------------------


async def test_pdf_pages_are_joined_with_blank_lines() -> None:
    pdf = make_pdf("Llamas live in the Andes.", "They hum to communicate.")
    doc = await load_document(data_url(pdf, "application/pdf"))
    assert doc.text == "Llamas live in the Andes.\n\nThey hum to communicate."
    assert (doc.mime_type, doc.source) == ("application/pdf", "data-url")


async def test_pdf_is_recognised_by_its_magic_bytes() -> None:
    pdf = make_pdf("Sniffed.")
    assert (await load_document(data_url(pdf, "application/octet-stream"))).text == "Sniffed."
    # Even a wrong declared type: a PDF read as text would be garbage.
    assert (await load_document(data_url(pdf, "text/plain"), "text/plain")).text == "Sniffed."


def test_pdf_with_an_empty_user_password_opens() -> None:
    assert (
        extract_text(make_pdf("Only permissions.", user_password=""), "application/pdf")
        == "Only permissions."
    )


def test_encrypted_and_broken_pdfs_are_document_errors() -> None:
    with pytest.raises(DocumentError, match="encrypted with a password"):
        extract_text(make_pdf("Secret.", user_password="secret"), "application/pdf")
    with pytest.raises(DocumentError, match="Could not read the PDF"):
        extract_text(b"%PDF-1.7\nthis is not really a pdf", "application/pdf")
    with pytest.raises(DocumentError, match="no extractable text"):
        extract_text(make_pdf(""), "application/pdf")


# --- types ------------------------------------------------------------------------------------


def test_json_csv_and_charsets() -> None:
    assert extract_text(b'{"llama":"\\u00e9","n":[1]}', "application/json") == (
        '{\n  "llama": "é",\n  "n": [\n    1\n  ]\n}'
    )
    assert extract_text(b"name,height\r\nllama,1.8\r\n", "text/csv") == "name,height\nllama,1.8\n"
    assert extract_text("naïve".encode("cp1252"), "text/plain") == "naïve"  # not UTF-8: fallback
    assert extract_text("naïve".encode("utf-16"), "text/plain") == "naïve"  # BOM
    assert extract_text("naïve".encode(), "text/plain; charset=no-such-charset") == "naïve"
    with pytest.raises(DocumentError, match="Invalid JSON"):
        extract_text(b"{nope", "application/json")


def test_unsupported_types_are_named() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(32)
    with pytest.raises(UnsupportedDocumentError, match="'image/png'"):
        extract_text(png, "application/octet-stream")
    with pytest.raises(UnsupportedDocumentError, match="'application/octet-stream'"):
        extract_text(bytes(range(256)), "")
    with pytest.raises(UnsupportedDocumentError, match="'application/msword'"):
        extract_text(b"whatever", "application/msword")


def test_guess_mime_type() -> None:
    assert guess_mime_type(b"%PDF-1.7 ...") == "application/pdf"
    assert guess_mime_type(b"\xef\xbb\xbf  <!DOCTYPE html><html>") == "text/html"
    assert guess_mime_type(b"<HTML><body>hi") == "text/html"
    assert guess_mime_type(b"# Title", "https://x.org/README.md?raw=1") == "text/markdown"
    assert guess_mime_type(b"a,b\n1,2", "https://x.org/t.csv") == "text/csv"
    assert guess_mime_type(b"just words") == "text/plain"
    assert guess_mime_type(bytes(range(256)), "https://x.org/a.bin") == "application/octet-stream"


async def test_unsupported_url_schemes() -> None:
    with pytest.raises(UnsupportedDocumentError, match="scheme 'file'"):
        await load_document("file:///etc/passwd")
    with pytest.raises(UnsupportedDocumentError, match="scheme 'ftp'"):
        await load_document({"uri": "ftp://example.com/a.txt"})
    with pytest.raises(UnsupportedDocumentError, match=r"'/tmp/a\.txt'"):
        await load_document({"uri": "/tmp/a.txt"})
    # Text that merely starts like a URL or contains one is text.
    assert (await load_document("Note: see https://example.com")).source == "inline"
    assert (await load_document("Data: in 2023, sales rose.")).text == "Data: in 2023, sales rose."


# --- http(s) URLs, against a real server on 127.0.0.1 -----------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


def _send(status: int, body: bytes, content_type: str | None, **headers: str) -> Route:
    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    return handle


def _chunked(pieces: int, piece: bytes, pause_s: float = 0.0) -> Route:
    """A body without Content-Length, sent in pieces (optionally slowly)."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            for _ in range(pieces):
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                handler.wfile.flush()
                time.sleep(pause_s)
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client gave up, as it should

    return handle


ROUTES: dict[str, Route] = {
    "/page": _send(200, (DATA / "sample.html").read_bytes(), "text/html; charset=utf-8"),
    "/notes.md": _send(200, (DATA / "sample.md").read_bytes(), "application/octet-stream"),
    "/latin": _send(200, "Grüße aus Zürich".encode("latin-1"), "text/plain; charset=ISO-8859-1"),
    "/no-type": _send(200, b"<!doctype html><p>Sniffed <i>html</i></p>", None),
    "/paper": _send(200, make_pdf("A paper about llamas."), "application/pdf"),
    "/data.json": _send(200, b'{"a":1}', "application/json"),
    "/image": _send(200, b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png"),
    "/missing": _send(404, b"no such page", "text/plain"),
    "/broken": _send(500, b"oops", "text/plain"),
    "/redirect": _send(302, b"", None, Location="/page"),
    "/loop": _send(302, b"", None, Location="/loop"),
    "/big": _send(200, b"x" * 5000, "text/plain"),
    "/big-chunked": _chunked(10, b"y" * 1000),
    "/slow": _chunked(30, b"z", pause_s=0.1),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        route = ROUTES.get(urllib.parse.urlsplit(self.path).path)
        (route or _send(404, b"", None))(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _allowing(url: str) -> OutboundPolicy:
    """The outbound policy with this loopback server's port, and only that, allowed."""
    return OutboundPolicy(OutboundConfig(allow_hosts=[url.removeprefix("http://")]))


@pytest.fixture()
def fetch(server: str) -> Callable[..., Any]:
    """load_document, allowed to reach the test server."""
    return functools.partial(load_document, outbound=_allowing(server))


async def test_fetch_html(server: str, fetch: Callable[..., Any]) -> None:
    doc = await fetch(f"{server}/page")
    assert (doc.mime_type, doc.source) == ("text/html", f"{server}/page")
    assert "The llama is a domesticated South American camelid." in doc.text
    assert "SCRIPT-TEXT" not in doc.text


async def test_fetch_follows_redirects_and_keeps_the_given_url(
    server: str, fetch: Callable[..., Any]
) -> None:
    doc = await fetch({"uri": f"{server}/redirect"})
    assert doc.mime_type == "text/html"
    assert doc.source == f"{server}/redirect"
    assert doc.text.startswith("Llamas of the Andes")


async def test_fetch_redirect_loop(server: str, fetch: Callable[..., Any]) -> None:
    with pytest.raises(DocumentFetchError, match="too many redirects"):
        await fetch(f"{server}/loop")


async def test_fetch_content_type_detection(server: str, fetch: Callable[..., Any]) -> None:
    md = await fetch(f"{server}/notes.md")  # octet-stream: the suffix decides
    assert (md.mime_type, md.text) == ("text/markdown", (DATA / "sample.md").read_text())
    latin = await fetch(f"{server}/latin")
    assert (latin.mime_type, latin.text) == ("text/plain", "Grüße aus Zürich")
    sniffed = await fetch(f"{server}/no-type")
    assert (sniffed.mime_type, sniffed.text) == ("text/html", "Sniffed html")
    pdf = await fetch(f"{server}/paper")
    assert (pdf.mime_type, pdf.text) == ("application/pdf", "A paper about llamas.")
    data = await fetch(f"{server}/data.json")
    assert (data.mime_type, data.text) == ("application/json", '{\n  "a": 1\n}')
    forced = await fetch(f"{server}/data.json", "text/plain")
    assert (forced.mime_type, forced.text) == ("text/plain", '{"a":1}')


async def test_fetch_bad_status(server: str, fetch: Callable[..., Any]) -> None:
    with pytest.raises(DocumentFetchError, match="HTTP 404 Not Found"):
        await fetch(f"{server}/missing")
    with pytest.raises(DocumentFetchError, match="HTTP 500"):
        await fetch({"uri": f"{server}/broken"})


async def test_fetch_unsupported_type(server: str, fetch: Callable[..., Any]) -> None:
    with pytest.raises(UnsupportedDocumentError, match="'image/png'"):
        await fetch(f"{server}/image")


async def test_fetch_too_large(server: str, fetch: Callable[..., Any]) -> None:
    with pytest.raises(DocumentTooLargeError, match="5000 bytes"):  # by Content-Length
        await fetch(f"{server}/big", max_bytes=4096)
    with pytest.raises(DocumentTooLargeError, match="more than 4096"):  # while streaming
        await fetch(f"{server}/big-chunked", max_bytes=4096)
    assert len((await fetch(f"{server}/big-chunked", max_bytes=10_000)).text) == 10_000


async def test_fetch_total_timeout(server: str, fetch: Callable[..., Any]) -> None:
    # Each piece arrives well within the timeout; the whole body does not.
    started = time.perf_counter()
    with pytest.raises(DocumentFetchError, match=r"timed out after 0\.5 s"):
        await fetch(f"{server}/slow", timeout_s=0.5)
    assert time.perf_counter() - started < 2


async def test_fetch_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DocumentFetchError, match="Could not fetch"):
        await load_document(f"http://127.0.0.1:{port}/x", outbound=_allowing(f"http://127.0.0.1:{port}"))


async def test_fetch_goes_through_the_outbound_policy(server: str) -> None:
    # By default only public addresses are fetched; the given policy decides otherwise.
    with pytest.raises(OutboundRefusedError, match="not a public address"):
        await load_document(f"{server}/redirect")
    doc = await load_document(f"{server}/redirect", outbound=_allowing(server))
    assert doc.text.startswith("Llamas of the Andes")


def test_json_helper_round_trip() -> None:
    # Pretty JSON keeps non-ASCII text readable for embedding models.
    assert json.loads(extract_text('{"x": "ü"}'.encode(), "application/json")) == {"x": "ü"}


async def test_many_url_documents_are_prepared_in_calls_of_bounded_size(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documents given by URL, mixed with inline ones, get the chunks each gets alone, also when the
    fetched bodies are handed to the worker thread a few at a time (the bound keeps many large bodies
    from being held at once)."""
    from llamastack.stack.apis.vector_io import RAGDocument
    from llamastack.stack.ingestion import Chunking, DocumentLimits, document_chunks, pipeline

    limits = DocumentLimits(outbound=_allowing(server))
    documents = [
        RAGDocument(document_id="page", content=f"{server}/page"),
        RAGDocument(document_id="inline", content="Llamas hum to their young."),
        RAGDocument(document_id="md", content={"uri": f"{server}/notes.md"}, mime_type="text/markdown"),
        RAGDocument(document_id="big", content=f"{server}/big"),
    ]
    chunking = Chunking(size_tokens=64, overlap_tokens=8)
    alone = [await document_chunks(d, chunking, limits) for d in documents]
    calls: list[int] = []
    prepare_all = pipeline._prepare_all

    def counted(batch: Any, *args: Any) -> Any:
        calls.append(len(batch))
        return prepare_all(batch, *args)

    monkeypatch.setattr(pipeline, "_prepare_all", counted)
    assert await pipeline.documents_chunks(documents, chunking, limits) == alone
    assert calls == [4]  # small bodies: one call for all
    calls.clear()
    monkeypatch.setattr(pipeline, "FETCHED_BYTES_PER_CALL", 1000)
    assert await pipeline.documents_chunks(documents, chunking, limits) == alone
    assert sum(calls) == 4 and len(calls) > 1
    assert alone[0][0].metadata["source"] == f"{server}/page"
