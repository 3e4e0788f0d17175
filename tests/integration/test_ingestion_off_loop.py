"""Parsing and chunking a large document runs in worker threads: while the server ingests one, the
event loop keeps answering other requests.

The document is HTML that takes seconds to parse and yields little text, so parsing, not embedding,
is most of the ingestion time. Were it parsed on the loop, a request sent meanwhile would wait for
most of that time; off the loop it waits only for its share of the GIL.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from conftest import EMBEDDING_MODEL

pytestmark = pytest.mark.integration


def _slow_html(rows: int = 25_000) -> bytes:
    """About 1.5 MB of nested markup with a few words every hundred rows: seconds of parsing, a
    handful of chunks to embed."""
    body = "".join(
        f"<div class='row'><span><b></b><i></i><em></em></span><a href='#{i}'>"
        f"{f'row {i}' if i % 100 == 99 else ''}</a></div>\n"
        for i in range(rows)
    )
    return f"<!doctype html><html><body>{body}</body></html>".encode()


def _measure(ingest: Callable[[], httpx.Response], base_url: str) -> tuple[float, list[float]]:
    """(seconds the ingestion took, latencies of the health checks sent while it ran)."""
    result: dict[str, object] = {}

    def run() -> None:
        started = time.perf_counter()
        try:
            result["response"] = ingest()
        finally:
            result["took"] = time.perf_counter() - started

    worker = threading.Thread(target=run)
    latencies: list[float] = []
    with httpx.Client(base_url=base_url, timeout=120) as client:
        worker.start()
        time.sleep(0.2)  # let the ingestion get under way
        while worker.is_alive():
            started = time.perf_counter()
            assert client.get("/v1/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    worker.join()
    response = result["response"]
    assert isinstance(response, httpx.Response) and response.status_code == 200, response
    return float(result["took"]), latencies  # type: ignore[arg-type]


def _check(took: float, latencies: list[float]) -> None:
    # The document must really take a while, or the comparison says nothing.
    assert took > 1.0, f"ingestion took only {took:.2f} s; make the document larger"
    assert len(latencies) >= 3, latencies
    worst = max(latencies)
    assert worst < took / 4, f"a health check took {worst:.2f} s while ingestion took {took:.2f} s"


def test_attaching_a_large_file_leaves_the_loop_responsive(base_url: str) -> None:
    api = f"{base_url}/v1/openai/v1"
    with httpx.Client(base_url=api, timeout=300) as client:
        upload = client.post(
            "/files",
            files={"file": ("table.html", _slow_html(), "text/html")},
            data={"purpose": "assistants"},
        )
        assert upload.status_code == 200, upload.text
        file_id = upload.json()["id"]
        vs = client.post("/vector_stores", json={"name": "slow-html"})
        assert vs.status_code == 200, vs.text
        vs_id = vs.json()["id"]
        try:
            took, latencies = _measure(
                lambda: client.post(f"/vector_stores/{vs_id}/files", json={"file_id": file_id}), base_url
            )
            _check(took, latencies)
            content = client.get(f"/vector_stores/{vs_id}/files/{file_id}/content")
            assert content.status_code == 200 and "row 24999" in content.json()["content"][0]["text"]
        finally:
            client.delete(f"/vector_stores/{vs_id}")
            client.delete(f"/files/{file_id}")


def test_inserting_a_large_rag_document_leaves_the_loop_responsive(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=300) as client:
        db = "slow-html-rag"
        r = client.post("/v1/vector-dbs", json={"vector_db_id": db, "embedding_model": EMBEDDING_MODEL})
        assert r.status_code == 200, r.text
        url = "data:text/html;base64," + base64.b64encode(_slow_html()).decode()
        try:
            took, latencies = _measure(
                lambda: client.post(
                    "/v1/tool-runtime/rag-tool/insert",
                    json={
                        "documents": [{"document_id": "table", "content": url}],
                        "vector_db_id": db,
                        "chunk_size_in_tokens": 512,
                    },
                ),
                base_url,
            )
            _check(took, latencies)
        finally:
            client.delete(f"/v1/vector-dbs/{db}")
