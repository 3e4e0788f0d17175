"""Fetching a document by http(s) URL through the stack's outbound policy, with a deadline and a size cap."""

from __future__ import annotations

import asyncio

import httpx

from ..errors import DocumentFetchError, DocumentTooLargeError
from ..outbound import OutboundPolicy

MAX_REDIRECTS = 5
_FETCH_HEADERS = {
    "User-Agent": "llamastack-rag/0.1",
    "Accept": "text/html,application/xhtml+xml,application/pdf,text/plain;q=0.9,*/*;q=0.5",
}


async def fetch(
    url: str, outbound: OutboundPolicy | None, max_bytes: int, timeout_s: float
) -> tuple[bytes, str | None, str]:
    """(body, Content-Type, final URL) of a GET, with a total deadline and a size cap.

    `outbound` (by default: public addresses only) checks every connection, redirects included,
    and raises `OutboundRefusedError` (400) for one it does not allow.
    """
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
            check_size(int(declared), max_bytes)
        body = bytearray()
        async for piece in response.aiter_bytes():  # decompressed: the cap also stops zip bombs
            body += piece
            check_size(len(body), max_bytes, at_least=True)
        return bytes(body), response.headers.get("content-type"), str(response.url)


def check_size(size: int, max_bytes: int, *, at_least: bool = False) -> None:
    if size > max_bytes:
        shown = f"more than {max_bytes}" if at_least else str(size)
        raise DocumentTooLargeError(f"The document is {shown} bytes; the limit is {max_bytes} bytes.")
