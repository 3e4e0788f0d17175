"""The OpenAI Files API with the openai SDK (and raw HTTP where the SDK hides the wire)."""

from __future__ import annotations

import io
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import llama_stack_client
import openai
import pytest

from conftest import start_server

pytestmark = pytest.mark.integration

FILES = "/v1/openai/v1/files"
ID = re.compile(r"file-[0-9a-f]{32}")
# Every byte value, NULs and invalid UTF-8 included, then random bytes.
BLOB = bytes(range(256)) * 4 + os.urandom(300_000)


def _upload(client, name: str, data: bytes) -> str:
    return client.files.create(file=(name, io.BytesIO(data)), purpose="assistants").id


def test_upload_bytes_and_a_named_file(openai_client, tmp_path: Path) -> None:
    before = int(time.time())
    raw = openai_client.files.create(file=b"just some bytes", purpose="assistants")
    assert ID.fullmatch(raw.id)
    assert (raw.object, raw.bytes, raw.purpose) == ("file", 15, "assistants")
    assert before <= raw.created_at <= int(time.time())

    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nLlamas hum.\n")
    with path.open("rb") as fh:
        named = openai_client.files.create(file=fh, purpose="assistants")
    assert named.filename == "notes.md"
    assert named.bytes == path.stat().st_size
    assert named.id != raw.id


def test_retrieve_returns_what_upload_returned(openai_client) -> None:
    created = openai_client.files.create(file=("report.txt", io.BytesIO(b"quarterly")), purpose="assistants")
    got = openai_client.files.retrieve(created.id)
    assert got.model_dump() == created.model_dump()
    assert (got.filename, got.bytes) == ("report.txt", 9)


def test_content_round_trip_is_byte_exact(openai_client, base_url: str) -> None:
    blob_id = _upload(openai_client, "blob.bin", BLOB)
    assert openai_client.files.content(blob_id).content == BLOB

    text = "héllo, wörld — ✓\n".encode()
    text_id = _upload(openai_client, "greeting.txt", text)
    response = httpx.get(f"{base_url}{FILES}/{text_id}/content")
    assert response.status_code == 200
    assert response.content == text
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-length"] == str(len(text))
    assert "greeting.txt" in response.headers["content-disposition"]
    binary = httpx.get(f"{base_url}{FILES}/{blob_id}/content")
    assert binary.headers["content-type"] == "application/octet-stream"

    empty_id = _upload(openai_client, "empty.txt", b"")
    assert openai_client.files.retrieve(empty_id).bytes == 0
    assert openai_client.files.content(empty_id).content == b""


def test_declared_content_type_is_kept(openai_client, base_url: str) -> None:
    with httpx.Client() as client:
        created = client.post(
            f"{base_url}{FILES}",
            data={"purpose": "assistants"},
            files={"file": ("data", b'{"a": 1}', "application/json")},
        ).json()
    response = httpx.get(f"{base_url}{FILES}/{created['id']}/content")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"a": 1}


def test_list_order_filter_and_pagination(openai_client, http: httpx.Client) -> None:
    ours = [_upload(openai_client, f"page-{i}.txt", f"page {i}".encode()) for i in range(5)]

    ascending = [f.id for f in openai_client.files.list(order="asc")]  # the SDK follows the cursor
    assert [i for i in ascending if i in ours] == ours
    descending = [f.id for f in openai_client.files.list()]  # desc is the default
    assert descending == ascending[::-1]
    assert len(set(ascending)) == len(ascending)

    assert [f.id for f in openai_client.files.list(purpose="assistants", order="asc")] == ascending

    # Two at a time from just before ours: the cursor, has_more, first_id and last_id on the wire.
    start = ascending.index(ours[0])
    after = ascending[start - 1] if start else None
    seen: list[str] = []
    while True:
        params = {"order": "asc", "limit": 2, **({"after": after} if after else {})}
        page = http.get(FILES, params=params).json()
        assert page["object"] == "list"
        ids = [f["id"] for f in page["data"]]
        assert len(ids) <= 2
        if ids:
            assert (page["first_id"], page["last_id"]) == (ids[0], ids[-1])
        seen += ids
        if not page["has_more"]:
            break
        assert len(ids) == 2
        after = page["last_id"]
    assert seen == ascending[start:]

    # Through the SDK: one page of two, then the next page.
    first = openai_client.files.list(order="asc", limit=2, after=ascending[start - 1] if start else None)
    assert [f.id for f in first.data] == ours[:2]
    assert first.has_more is True
    assert [f.id for f in first.get_next_page().data] == ours[2:4]


def test_list_rejects_bad_parameters(http: httpx.Client) -> None:
    for params in ({"limit": 0}, {"limit": 10_001}, {"order": "sideways"}, {"purpose": "batch"}):
        response = http.get(FILES, params=params)
        assert response.status_code == 400, params
    response = http.get(FILES, params={"after": "file-" + "0" * 32})
    assert response.status_code == 400
    assert "file-" + "0" * 32 in response.json()["error"]["message"]


def test_delete_removes_metadata_and_content(openai_client) -> None:
    file_id = _upload(openai_client, "temp.txt", b"short-lived")
    deleted = openai_client.files.delete(file_id)
    assert (deleted.id, deleted.deleted) == (file_id, True)
    with pytest.raises(openai.NotFoundError):
        openai_client.files.retrieve(file_id)
    with pytest.raises(openai.NotFoundError):
        openai_client.files.content(file_id)
    with pytest.raises(openai.NotFoundError):
        openai_client.files.delete(file_id)
    assert file_id not in [f.id for f in openai_client.files.list()]


def test_unknown_ids_are_404_naming_the_id(openai_client, http: httpx.Client) -> None:
    for file_id in ("file-" + "0" * 32, "nonsense", "file-ABC", "files.db"):
        with pytest.raises(openai.NotFoundError) as exc:
            openai_client.files.retrieve(file_id)
        assert f"'{file_id}'" in exc.value.message
        assert "client.files.list()" in exc.value.message
    for path in ("files.db/content", "..%2Ffiles.db/content", "%2E%2E/%2E%2E/etc/passwd/content"):
        assert http.get(f"{FILES}/{path}").status_code == 404, path
    missing = "file-" + "f" * 32
    for method, path in (("GET", missing), ("GET", f"{missing}/content"), ("DELETE", missing)):
        response = http.request(method, f"{FILES}/{path}")
        assert response.status_code == 404
        assert f"File '{missing}' not found" in response.json()["error"]["message"]


def test_bad_purpose_is_400_naming_the_allowed_ones(openai_client) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client.files.create(file=("x.txt", io.BytesIO(b"x")), purpose="fine-tune")
    assert "'fine-tune'" in exc.value.message
    assert "assistants" in exc.value.message


def test_malformed_uploads_are_400(http: httpx.Client) -> None:
    no_file = http.post(FILES, data={"purpose": "assistants"}, files={"other": ("a.txt", b"a")})
    assert no_file.status_code == 400
    assert "no 'file' part" in no_file.json()["error"]["message"]

    no_purpose = http.post(FILES, files={"file": ("a.txt", b"a")})
    assert no_purpose.status_code == 400
    assert "purpose" in no_purpose.json()["error"]["message"]

    as_json = http.post(FILES, json={"file": "a", "purpose": "assistants"})
    assert as_json.status_code == 400
    assert "multipart/form-data" in as_json.json()["error"]["message"]

    two_files = http.post(
        FILES, data={"purpose": "assistants"}, files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))]
    )
    assert two_files.status_code == 400

    truncated = http.post(
        FILES,
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc',
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert truncated.status_code == 400


def test_concurrent_uploads(openai_client) -> None:
    payloads = {f"c{i}.bin": os.urandom(20_000 + i) for i in range(8)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = dict(
            zip(payloads, pool.map(lambda kv: _upload(openai_client, *kv), payloads.items()), strict=True)
        )
    assert len(set(ids.values())) == len(ids)
    for name, file_id in ids.items():
        assert openai_client.files.content(file_id).content == payloads[name]


def test_llama_stack_client_sees_the_same_files(openai_client, stack_client) -> None:
    file_id = _upload(openai_client, "shared.txt", b"seen by both clients")
    got = stack_client.files.retrieve(file_id)
    assert (got.id, got.filename, got.bytes, got.purpose) == (file_id, "shared.txt", 20, "assistants")
    assert file_id in [f.id for f in stack_client.files.list().data]


def test_llama_stack_client_upload_content_delete(stack_client) -> None:
    data = b"kept as sent\n"
    created = stack_client.files.create(file=("notes.txt", io.BytesIO(data)), purpose="assistants")
    assert ID.fullmatch(created.id)
    assert (created.filename, created.bytes, created.purpose) == ("notes.txt", 13, "assistants")
    assert stack_client.files.retrieve(created.id) == created
    assert created.id in [f.id for f in stack_client.files.list(purpose="assistants").data]
    assert stack_client.files.content(created.id) == data.decode()
    deleted = stack_client.files.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(llama_stack_client.NotFoundError):
        stack_client.files.retrieve(created.id)


def _multipart(data: bytes, boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), {
        "content-type": f"multipart/form-data; boundary={boundary}"
    }


def test_too_large_uploads_are_413_and_store_nothing(tmp_path: Path) -> None:
    limit = 1000
    server = start_server(tmp_path / "state", env={"FILES_MAX_BYTES": str(limit)})
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            kept = http.post(FILES, data={"purpose": "assistants"}, files={"file": ("ok.bin", BLOB[:500])})
            assert kept.status_code == 200, kept.text
            at_limit = http.post(
                FILES, data={"purpose": "assistants"}, files={"file": ("edge.bin", BLOB[:limit])}
            )
            assert at_limit.status_code == 200, at_limit.text
            assert at_limit.json()["bytes"] == limit

            # Content-Length within the form overhead: refused while the file part streams in.
            over = http.post(
                FILES, data={"purpose": "assistants"}, files={"file": ("over.bin", BLOB[: limit + 1])}
            )
            assert over.status_code == 413
            assert str(limit) in over.json()["error"]["message"]

            # No Content-Length at all (chunked): refused while streaming, too.
            body, headers = _multipart(BLOB[:5000])
            chunked = http.post(
                FILES, content=(body[i : i + 700] for i in range(0, len(body), 700)), headers=headers
            )
            assert chunked.status_code == 413

            # A Content-Length far over the limit: refused before the body is sent.
            host, port = server.base_url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(
                    f"POST {FILES} HTTP/1.1\r\nHost: {host}\r\n"
                    "Content-Type: multipart/form-data; boundary=b0undary\r\n"
                    "Content-Length: 50000000\r\n\r\n".encode()
                )
                reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 413"), reply[:200]

            # The file part before a bad purpose: 400, and its bytes are thrown away.
            file_first = (
                b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
                + BLOB[:300]
                + b'\r\n--b0undary\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch'
                + b"\r\n--b0undary--\r\n"
            )
            bad = http.post(FILES, content=file_first, headers=_multipart(b"")[1])
            assert bad.status_code == 400

            # A client that goes away halfway through its upload.
            body, _ = _multipart(BLOB[:900])
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(
                    f"POST {FILES} HTTP/1.1\r\nHost: {host}\r\n"
                    "Content-Type: multipart/form-data; boundary=b0undary\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body[:600]
                )
                time.sleep(0.3)

            listed = http.get(FILES).json()["data"]
            assert sorted(f["id"] for f in listed) == sorted([kept.json()["id"], at_limit.json()["id"]])
            assert http.get(f"{FILES}/{kept.json()['id']}/content").content == BLOB[:500]
            assert http.get(f"{FILES}/{at_limit.json()['id']}/content").content == BLOB[:limit]
        files_dir = tmp_path / "state" / "files"
        deadline = time.monotonic() + 10
        while True:  # the abandoned upload is cleaned up once the server notices the disconnect
            stored = sorted(p.name for p in files_dir.iterdir() if not p.name.startswith("files.db"))
            if stored == sorted(f["id"] for f in listed) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert stored == sorted(f["id"] for f in listed)
    finally:
        server.stop()


def test_files_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key="x", max_retries=0)
        kept = client.files.create(file=("kept.bin", io.BytesIO(BLOB)), purpose="assistants")
        gone = _upload(client, "gone.txt", b"deleted before the restart")
        client.files.delete(gone)
    finally:
        server.stop()

    server = start_server(state)
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1/openai/v1", api_key="x", max_retries=0)
        assert [f.id for f in client.files.list()] == [kept.id]
        assert client.files.retrieve(kept.id).model_dump() == kept.model_dump()
        assert client.files.content(kept.id).content == BLOB
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(gone)
        client.files.delete(kept.id)
        assert client.files.list().data == []
    finally:
        server.stop()
