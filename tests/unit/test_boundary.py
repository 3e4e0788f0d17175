"""The boundary between the stack and the services it calls: real httpx / openai errors (a closed
loopback port, a port that accepts but never answers, a loopback server answering error statuses)
become typed errors naming the service, with secrets scrubbed."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from llamastack.stack.boundary import Boundary, Failure, describe, retry_after_seconds
from llamastack.stack.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    ServerBusyError,
    StackError,
    UpstreamError,
)

from conftest import LoopbackWeb, free_port

SECRET = "sk-boundary-1234"


@pytest.fixture(scope="module")
def web() -> Iterator[LoopbackWeb]:
    retry_at = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server = LoopbackWeb(
        {
            "/missing": (404, {}, b"no such model"),
            "/unauthorized": (401, {}, b""),
            "/forbidden": (403, {}, b""),
            "/limited": (429, {"Retry-After": "7"}, b"slow down"),
            "/down": (503, {"Retry-After": retry_at}, b""),
            "/bad": (400, {}, b"context too long"),
            "/broken": (500, {}, f"upstream failed with key={SECRET}".encode()),
            "/ok": (200, {}, b"fine"),
            "/v1/models": (429, {"Retry-After": "5"}, b'{"error": {"message": "rate limited"}}'),
        }
    )
    yield server
    server.close()


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def _get(web: LoopbackWeb, path: str) -> None:
    httpx.get(f"{web.url}{path}", timeout=5).raise_for_status()


def test_a_refused_connection_names_the_service_and_what_to_check() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(UpstreamError) as info, Boundary("remote::vllm", url):
        httpx.get(url, timeout=5)
    assert info.value.status_code == 502
    assert info.value.detail.startswith(f"remote::vllm could not reach {url}: ConnectError")
    assert "Check that the service is running" in info.value.detail
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_timeout_says_so(silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}/"
    with pytest.raises(UpstreamError) as info, Boundary("remote::vllm", url):
        httpx.get(url, timeout=0.3)
    assert "timed out talking to" in info.value.detail
    assert "ReadTimeout: connected, but timed out waiting for an answer" in info.value.detail
    assert "raise the provider's timeout" in info.value.detail


@pytest.mark.parametrize(
    ("path", "error", "words"),
    [
        ("/missing", NotFoundError, "answered HTTP 404 Not Found: no such model"),
        ("/unauthorized", UpstreamError, "rejected the credentials (HTTP 401)"),
        ("/forbidden", UpstreamError, "rejected the credentials (HTTP 403)"),
        ("/bad", BadRequestError, "rejected the request (HTTP 400 Bad Request): context too long"),
        ("/broken", UpstreamError, "answered HTTP 500 Internal Server Error: upstream failed"),
    ],
)
def test_http_error_statuses_become_typed_errors(
    web: LoopbackWeb, path: str, error: type[StackError], words: str
) -> None:
    with pytest.raises(error) as info, Boundary("remote::openai", web.url):
        _get(web, path)
    assert type(info.value) is error
    assert info.value.detail.startswith("remote::openai ") and words in info.value.detail


def test_busy_upstreams_give_503_with_their_retry_after(web: LoopbackWeb) -> None:
    with pytest.raises(ServerBusyError) as info, Boundary("remote::openai", web.url):
        _get(web, "/limited")
    assert info.value.status_code == 503 and info.value.headers == {"Retry-After": "7"}
    assert "busy (HTTP 429 Too Many Requests); retry in 7s" in info.value.detail
    with pytest.raises(ServerBusyError) as info, Boundary("remote::openai", web.url):
        _get(web, "/down")  # Retry-After as an HTTP date, 30 s ahead
    assert 25 <= int(info.value.headers["Retry-After"]) <= 31


def test_retry_after_values() -> None:
    assert retry_after_seconds("12") == 12
    assert retry_after_seconds("0") == 1
    assert retry_after_seconds("999999") == 3600
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 1  # in the past


def test_secrets_are_scrubbed_from_every_message(web: LoopbackWeb) -> None:
    with pytest.raises(UpstreamError) as info, Boundary("wolfram_alpha", web.url, secrets=[SECRET, None]):
        _get(web, "/broken")
    assert "key=********" in info.value.detail and SECRET not in info.value.detail
    assert SECRET not in str(info.value)
    leaky = f"http://user:{SECRET}@127.0.0.1:{free_port()}/"
    with pytest.raises(UpstreamError) as info, Boundary("wolfram_alpha", leaky, secrets=[SECRET]):
        httpx.get(leaky, timeout=5)
    assert SECRET not in info.value.detail


def test_credentials_and_status_classes_can_be_chosen(web: LoopbackWeb) -> None:
    boundary = Boundary(
        "web_search",
        web.url,
        credentials="API key",
        credentials_hint="Send a valid key.",
        credentials_error=BadRequestError,
        statuses={404: UpstreamError},
    )
    with pytest.raises(BadRequestError) as info, boundary:
        _get(web, "/unauthorized")
    assert info.value.detail == "web_search rejected the API key (HTTP 401). Send a valid key."
    with pytest.raises(UpstreamError, match="answered HTTP 404 Not Found: no such model"), boundary:
        _get(web, "/missing")


def test_our_own_errors_pass_through_untouched() -> None:
    ours = ConflictError(f"already there {SECRET}")
    with pytest.raises(ConflictError) as info, Boundary("x", secrets=[SECRET]):
        raise ours
    assert info.value is ours and SECRET in info.value.detail


def test_listed_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), Boundary("chroma", passthrough=(KeyError,)):
        raise KeyError("x")


def test_anything_else_becomes_a_502_not_a_500() -> None:
    with pytest.raises(UpstreamError) as info, Boundary("chroma", "/data/chroma"):
        raise ZeroDivisionError("division by zero")
    assert info.value.detail == "chroma failed talking to /data/chroma: ZeroDivisionError: division by zero"


class LibraryError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def test_rules_map_a_library_s_own_exceptions() -> None:
    def by_code(exc: BaseException) -> StackError | Failure | None:
        assert isinstance(exc, LibraryError)
        if exc.code == 404:
            return Failure("status", "HTTP 404 Not Found", status=404, body=str(exc))
        if exc.code == 409:
            return ConflictError(f"exists: {exc}")
        return None  # falls through to the default

    rules = {LibraryError: by_code}
    with (
        pytest.raises(NotFoundError, match="answered HTTP 404 Not Found: gone"),
        Boundary("lib", rules=rules),
    ):
        raise LibraryError("gone", 404)
    with (
        pytest.raises(ConflictError, match=r"^exists: \*{8}$"),
        Boundary("lib", rules=rules, secrets=[SECRET]),
    ):
        raise LibraryError(SECRET, 409)
    with pytest.raises(UpstreamError, match="LibraryError: odd"), Boundary("lib", rules=rules):
        raise LibraryError("odd", 500)
    # A rule may name its class, so that the library need not be imported to write it.
    named = {f"{__name__}.LibraryError": by_code}
    with pytest.raises(NotFoundError), Boundary("lib", rules=named):
        raise LibraryError("gone", 404)


def test_the_wording_can_be_replaced() -> None:
    seen: list[Failure] = []

    def word(failure: Failure) -> StackError:
        seen.append(failure)
        return BadRequestError(f"cannot reach it: {failure.reason}")

    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(BadRequestError, match=r"^cannot reach it: ConnectError"), Boundary("x", error=word):
        httpx.get(url, timeout=5)
    assert seen[0].kind == "connect" and seen[0].status is None


async def test_async_form_and_decorators(web: LoopbackWeb) -> None:
    boundary = Boundary("remote::tgi", web.url)

    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(NotFoundError):
            async with boundary:
                (await client.get(f"{web.url}/missing")).raise_for_status()

        @boundary
        async def fetch(path: str) -> str:
            response = await client.get(f"{web.url}{path}")
            response.raise_for_status()
            return response.text

        assert await fetch("/ok") == "fine"
        with pytest.raises(ServerBusyError):
            await fetch("/limited")

    @boundary
    def fetch_sync(path: str) -> str:
        response = httpx.get(f"{web.url}{path}", timeout=5)
        response.raise_for_status()
        return response.text

    assert fetch_sync("/ok") == "fine" and fetch_sync.__name__ == "fetch_sync"
    with pytest.raises(BadRequestError):
        fetch_sync("/bad")


async def test_cancellation_is_never_mapped() -> None:
    async def wait_forever() -> None:
        async with Boundary("x"):
            await asyncio.sleep(60)

    task = asyncio.create_task(wait_forever())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_exception_groups_report_their_most_telling_failure() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    try:
        httpx.get(url, timeout=5)
    except httpx.ConnectError as exc:
        refused = exc
    group = ExceptionGroup("task group", [RuntimeError("session closed"), refused])
    with pytest.raises(UpstreamError, match=r"could not reach .*ConnectError"), Boundary("mcp", url):
        raise group
    ours = NotFoundError("no tool")
    with pytest.raises(NotFoundError) as info, Boundary("mcp", url):
        raise ExceptionGroup("task group", [refused, ExceptionGroup("inner", [ours])])
    assert info.value is ours


def test_the_openai_sdk_s_errors_are_read_too(web: LoopbackWeb) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{web.url}/v1", api_key=SECRET, max_retries=0, timeout=5)
    with pytest.raises(ServerBusyError) as info, Boundary("remote::openai", web.url, secrets=[SECRET]):
        client.models.list()
    assert info.value.headers == {"Retry-After": "5"}
    closed = openai.OpenAI(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="x", max_retries=0)
    with pytest.raises(UpstreamError, match="could not reach"), Boundary("remote::openai"):
        closed.models.list()


def test_non_service_exceptions_are_not_described() -> None:
    assert describe(KeyError("x")) is None
    assert describe(ConnectionRefusedError(111, "Connection refused")).kind == "connect"  # type: ignore[union-attr]
    assert describe(TimeoutError()).kind == "timeout"  # type: ignore[union-attr]


def test_the_core_loads_no_http_library() -> None:
    libraries = "{'httpx', 'httpx2', 'openai', 'chromadb'}"
    code = f"import sys, llamastack.stack.boundary; print(sorted({libraries} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
    )
    assert out.stdout.strip() == "[]"
