"""Where the stack calls another service: that library's exceptions become our typed errors.

    with Boundary("wolfram_alpha", base_url, secrets=[key]):        # or `async with`, or @Boundary(...)
        response = await client.get(...)
        response.raise_for_status()

Inside a boundary:

- our own `StackError`s pass through untouched (e.g. the outbound policy's refusal, a 400 raised by
  the provider itself), and so does whatever is listed in ``passthrough``;
- failures of HTTP libraries (httpx, httpx2, the openai SDK) and sockets are read into a `Failure`
  (`describe`) and turned into an error whose message names the service and says what to check:
  timeouts and refused connections give `UpstreamError` (502); an HTTP 401/403 answer "rejected the
  credentials"; 404 `NotFoundError`; 429/503 `ServerBusyError` with the upstream's Retry-After; 400,
  413 and 422 `BadRequestError`; any other status `UpstreamError`;
- ``rules`` map further exception classes (a library's own, given as the class or, to keep that
  library unloaded until it fails, as its dotted name) to a factory returning a `StackError`, a
  `Failure` to be worded as above, or None to fall through;
- anything else becomes an `UpstreamError` too: a raw library exception never becomes a 500.

Every message is scrubbed of the given secrets (upstreams echo keys; Wolfram's travels in the URL).
Exception groups (anyio task groups, as in the MCP SDK) are looked into: cancellation propagates, a
`StackError` inside wins, otherwise the most telling failure (an HTTP library's) is reported.
No HTTP library is imported here: an exception can only be an instance of a library already loaded,
so its classes are looked up in `sys.modules`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, TypeVar

from .errors import BadRequestError, NotFoundError, ServerBusyError, StackError, UpstreamError
from .secrets import scrub

log = logging.getLogger(__name__)

FailureKind = Literal["timeout", "connect", "status", "transport", "other"]
_HTTP_LIBRARIES = ("httpx", "httpx2")
_BODY_CHARS = 200
_MAX_RETRY_AFTER_S = 3600
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong talking to a service, in words for the caller (secrets not yet scrubbed)."""

    kind: FailureKind
    reason: str  # e.g. "ConnectError: All connection attempts failed", "HTTP 404 Not Found"
    status: int | None = None  # the HTTP status the service answered with
    body: str = ""  # the start of that answer's body
    retry_after_s: int | None = None  # from its Retry-After header


Rule = Callable[[BaseException], "StackError | Failure | None"]


def http_status_text(code: int) -> str:
    """'HTTP 404 Not Found' (or 'HTTP 599' for a status without a standard phrase)."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def describe(exc: BaseException) -> Failure | None:
    """The failure an HTTP library (httpx, httpx2, openai) or socket exception stands for; None for
    exceptions that are not about talking to a service."""
    status_failure = _status_failure(exc)
    if status_failure is not None:
        return status_failure
    name = type(exc).__name__
    openai = sys.modules.get("openai")
    if openai is not None and isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__  # the SDK wraps the httpx error that says what happened
        if cause is not None and (described := describe(cause)) is not None:
            return described
        kind: FailureKind = "timeout" if isinstance(exc, openai.APITimeoutError) else "connect"
        return Failure(kind, f"{name}: {exc}")
    for library in _loaded(_HTTP_LIBRARIES):
        if isinstance(exc, library.ConnectTimeout):
            return Failure("timeout", f"{name}: timed out connecting")
        if isinstance(exc, library.PoolTimeout):
            return Failure("timeout", f"{name}: timed out waiting for a free connection")
        if isinstance(exc, library.TimeoutException):
            return Failure("timeout", f"{name}: connected, but timed out waiting for an answer")
        if isinstance(exc, library.ConnectError):
            return Failure("connect", _named(exc))
        if isinstance(exc, library.HTTPError):
            return Failure("transport", _named(exc))
    if isinstance(exc, TimeoutError):
        return Failure("timeout", f"{name}: no answer in time")
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return Failure("connect", _named(exc))
    if isinstance(exc, OSError):
        return Failure("transport", _named(exc))
    return None


class Boundary:
    """A context manager (sync and async) and decorator mapping failures of a call to `service`.

    `service` names who is calling (a provider or tool: "wolfram_alpha", "remote::vllm"), `url` what
    it calls. `credentials` is what a 401/403 says was rejected, `credentials_hint` what to do about
    it, `credentials_error` the error raised then (BadRequestError when the caller sends the key).
    `statuses` changes the error class of a status (the message stays). `error` replaces the
    wording altogether: it gets every `Failure` and returns the error to raise."""

    def __init__(
        self,
        service: str,
        url: str | None = None,
        *,
        secrets: Iterable[str | None] = (),
        rules: Mapping[type[BaseException] | str, Rule] | None = None,
        passthrough: tuple[type[BaseException], ...] = (),
        credentials: str = "credentials",
        credentials_hint: str = "Check the API key in the provider config.",
        credentials_error: type[StackError] = UpstreamError,
        statuses: Mapping[int, type[StackError]] | None = None,
        error: Callable[[Failure], StackError] | None = None,
    ) -> None:
        self.service = service
        self.url = url
        self.secrets = tuple(s for s in secrets if s)
        self.rules = dict(rules or {})
        self.passthrough = passthrough
        self.credentials = credentials
        self.credentials_hint = credentials_hint
        self.credentials_error = credentials_error
        self.statuses = dict(statuses or {})
        self.error = error

    # --- the three forms -------------------------------------------------------------------------

    def __enter__(self) -> Boundary:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._reraise(exc)

    async def __aenter__(self) -> Boundary:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, tb)

    def __call__(self, fn: _F) -> _F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self:
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    # --- mapping ---------------------------------------------------------------------------------

    def translate(self, exc: BaseException) -> BaseException:
        """The exception to raise instead of `exc` (`exc` itself when it passes through)."""
        leaves = list(_leaves(exc))
        if any(not isinstance(leaf, Exception) for leaf in leaves):
            return exc  # cancelled (the caller went away) or interrupted: not the service's doing
        for leaf in leaves:
            if isinstance(leaf, StackError):
                return leaf
        if len(leaves) == 1 and isinstance(leaves[0], self.passthrough):
            return leaves[0]
        # The most telling leaf first: an HTTP library's error over a generic one raised above it.
        for leaf in sorted(leaves, key=lambda e: 0 if _from_http_library(e) else 1):
            mapped = self._from_rules(leaf)
            if mapped is None:
                mapped = describe(leaf)
            if mapped is not None:
                return self._scrubbed(mapped if isinstance(mapped, StackError) else self.error_for(mapped))
        leaf = leaves[0]
        log.warning("%s failed with an unexpected %s", self.service, type(leaf).__name__)
        return self._scrubbed(self.error_for(Failure("other", _named(leaf))))

    def error_for(self, failure: Failure) -> StackError:
        """The typed error for a failure, worded for the caller."""
        if self.error is not None:
            return self.error(failure)
        target = self.url or "its service"
        if failure.kind == "connect":
            return UpstreamError(
                f"{self.service} could not reach {target}: {failure.reason}. "
                "Check that the service is running and that the URL is right."
            )
        if failure.kind == "timeout":
            return UpstreamError(
                f"{self.service} timed out talking to {target}: {failure.reason}. "
                "Check that the service is up and not overloaded, or raise the provider's timeout."
            )
        if failure.kind == "status" and failure.status is not None:
            return self._status_error(failure, failure.status, target)
        return UpstreamError(f"{self.service} failed talking to {target}: {failure.reason}")

    def _status_error(self, failure: Failure, code: int, target: str) -> StackError:
        answered = f"{self.service} answered {failure.reason}" + (f": {failure.body}" if failure.body else "")
        if code in (401, 403):
            error: StackError = self.credentials_error(
                f"{self.service} rejected the {self.credentials} (HTTP {code}). {self.credentials_hint}"
            )
        elif code == 404:
            error = NotFoundError(f"{answered}. Check {target} and the name of what was asked for.")
        elif code in (429, 503):
            retry_after_s = failure.retry_after_s or 1
            error = ServerBusyError(
                f"{self.service} is busy ({failure.reason}); retry in {retry_after_s}s.", retry_after_s
            )
        elif code in (400, 413, 422):
            error = BadRequestError(f"{self.service} rejected the request ({failure.reason}): {failure.body}")
        else:
            error = UpstreamError(answered)
        wanted = self.statuses.get(code)
        return wanted(error.detail) if wanted is not None and type(error) is not wanted else error

    def _from_rules(self, exc: BaseException) -> StackError | Failure | None:
        for kind in type(exc).__mro__:
            rule = self.rules.get(kind) or self.rules.get(f"{kind.__module__}.{kind.__qualname__}")
            if rule is not None and (mapped := rule(exc)) is not None:
                return mapped
        return None

    def _scrubbed(self, error: StackError) -> StackError:
        if self.secrets:
            error.detail = scrub(error.detail, *self.secrets)
            error.args = (error.detail,)
        return error

    def _reraise(self, exc: BaseException) -> None:
        replacement = self.translate(exc)
        if replacement is exc:
            return  # propagates unchanged from the with statement
        raise replacement from None


# --- reading exceptions ---------------------------------------------------------------------------


def _status_failure(exc: BaseException) -> Failure | None:
    """An HTTP error answer, from any library whose error carries the response (httpx's and httpx2's
    HTTPStatusError, openai's APIStatusError)."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    if not isinstance(code, int) or code < 400:
        return None
    headers = getattr(response, "headers", None) or {}
    try:
        body = " ".join(str(response.text)[:_BODY_CHARS].split())  # type: ignore[union-attr]
    except Exception:  # a streamed body not read, or undecodable
        body = ""
    return Failure(
        "status",
        http_status_text(code),
        status=code,
        body=body,
        retry_after_s=retry_after_seconds(headers.get("retry-after")),
    )


def retry_after_seconds(value: str | None) -> int | None:
    """A Retry-After header (seconds or an HTTP date) as whole seconds from now, at least 1."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = int((when - datetime.now(UTC)).total_seconds() + 0.999)
    return min(max(seconds, 1), _MAX_RETRY_AFTER_S)


def _loaded(names: Iterable[str]) -> Iterator[Any]:
    for name in names:
        module = sys.modules.get(name)
        if module is not None:
            yield module


def _from_http_library(exc: BaseException) -> bool:
    return type(exc).__module__.split(".", 1)[0] in (*_HTTP_LIBRARIES, "openai")


def _named(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, or `exc` itself."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
