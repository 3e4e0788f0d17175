"""Typed errors that carry their HTTP status; the server maps them in one place.

StackError (500)
├── BadRequestError (400)
│   └── ContextLengthExceededError (400)
├── ForbiddenError (403; a missing or wrong API key is answered by the auth middleware: 401)
├── NotFoundError (404)
│   ├── ModelNotFoundError
│   └── ProviderNotFoundError
├── ConflictError (409)
├── PayloadTooLargeError (413)
├── UnsupportedError (400: the owning provider cannot do what was asked)
├── ServerBusyError (503 with Retry-After)
├── UpstreamError (502)
├── DocumentError (400: a document cannot be turned into text)
│   ├── UnsupportedDocumentError (400: content type or URL scheme)
│   ├── DocumentFetchError (400: network error, timeout or bad status fetching its URL)
│   └── DocumentTooLargeError (413)
└── ConfigError (raised at start-up, never over HTTP)
"""

from __future__ import annotations


class StackError(Exception):
    status_code = 500
    title = "Internal Server Error"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequestError(StackError):
    status_code = 400
    title = "Bad Request"


class ContextLengthExceededError(BadRequestError):
    def __init__(self, *, limit: int, prompt_tokens: int, max_tokens: int | None) -> None:
        requested = prompt_tokens + (max_tokens or 0)
        wanted = f"{prompt_tokens} in the messages" + (
            f", {max_tokens} for the completion" if max_tokens else ""
        )
        super().__init__(
            f"This model's maximum context length is {limit} tokens. "
            f"However, you requested {requested} tokens ({wanted}). "
            "Please shorten the messages or reduce max_tokens."
        )
        self.limit = limit


class ForbiddenError(StackError):
    status_code = 403
    title = "Forbidden"


class NotFoundError(StackError):
    status_code = 404
    title = "Not Found"


class ModelNotFoundError(NotFoundError):
    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"Model '{model_id}' not found. Use client.models.list() (GET /v1/models) "
            "to list available models."
        )


class ProviderNotFoundError(NotFoundError):
    def __init__(self, provider_id: str, known: list[str]) -> None:
        super().__init__(
            f"Provider '{provider_id}' not found. Configured providers: {', '.join(known) or 'none'}."
        )


class ConflictError(StackError):
    status_code = 409
    title = "Conflict"


class PayloadTooLargeError(StackError):
    status_code = 413
    title = "Payload Too Large"


class UnsupportedError(StackError):
    status_code = 400
    title = "Bad Request"


class ServerBusyError(StackError):
    status_code = 503
    title = "Service Unavailable"

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class UpstreamError(StackError):
    status_code = 502
    title = "Bad Gateway"


class DocumentError(StackError):
    """A document (a RAG document, an attached file) cannot be turned into text."""

    status_code = 400
    title = "Bad Request"


class UnsupportedDocumentError(DocumentError):
    """The content type or URL scheme is not supported."""


class DocumentFetchError(DocumentError):
    """The document URL could not be fetched: network error, timeout or bad status. A 400, not a
    502: the URL is the client's, and so is what it points at."""


class DocumentTooLargeError(DocumentError):
    status_code = 413
    title = "Payload Too Large"


class ConfigError(StackError):
    """A run config or environment problem found at start-up; the CLI prints it and exits."""
