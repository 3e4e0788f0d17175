"""Typed errors that carry their HTTP status; the server maps them in one place.

StackError (500)
├── BadRequestError (400)
│   ├── ContextLengthExceededError
│   ├── InvalidRecordError (a record that would not validate is never written)
│   ├── OutboundRefusedError (a connection the outbound policy does not allow)
│   └── GrammarError (providers/utils/gbnf.py: a grammar llama.cpp must not see)
├── ForbiddenError (403; a missing or wrong API key is answered by the auth middleware: 401)
├── NotFoundError (404)
│   ├── ModelNotFoundError, ShieldNotFoundError, VectorDBNotFoundError, ProviderNotFoundError
│   ├── ToolGroupNotFoundError, ToolNotFoundError, ToolNotInGroupError
│   ├── VectorStoreNotFoundError, VectorStoreFileNotFoundError, OpenAIFileNotFoundError
│   └── UnreadableRecordError (a stored record that no longer validates: set aside, deletable)
├── ConflictError (409)
├── PayloadTooLargeError (413)
├── UnsupportedError (400: the owning provider cannot do what was asked)
├── ServerBusyError (503 with Retry-After)
│   └── StorageUnavailableError (the database cannot be reached right now)
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


class MissingCredentialsError(BadRequestError):
    """A provider needs a key (config or X-LlamaStack-Provider-Data) that this request does not have."""


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


class ShieldNotFoundError(NotFoundError):
    def __init__(self, shield_id: str) -> None:
        super().__init__(
            f"Shield '{shield_id}' not found. Use client.shields.list() (GET /v1/shields) to list shields."
        )


class VectorDBNotFoundError(NotFoundError):
    def __init__(self, vector_db_id: str) -> None:
        super().__init__(
            f"Vector db '{vector_db_id}' not found. Use client.vector_dbs.list() (GET /v1/vector-dbs) "
            "to list vector dbs, or register it first."
        )


class ToolGroupNotFoundError(NotFoundError):
    def __init__(self, toolgroup_id: str) -> None:
        super().__init__(
            f"Tool group '{toolgroup_id}' not found. "
            "Use client.toolgroups.list() (GET /v1/toolgroups) to list them."
        )


class ToolNotFoundError(NotFoundError):
    def __init__(self, tool_name: str) -> None:
        super().__init__(
            f"Tool '{tool_name}' not found. Use client.tools.list() (GET /v1/tools) to list tools."
        )


class ToolNotInGroupError(NotFoundError):
    def __init__(self, toolgroup_id: str, tool_name: str, tools: list[str]) -> None:
        super().__init__(
            f"Tool '{tool_name}' not found in tool group '{toolgroup_id}' (its tools: "
            f"{', '.join(tools) or 'none'}). Name one of them as '{toolgroup_id}/<tool>', or give "
            f"'{toolgroup_id}' for all of them."
        )


class VectorStoreNotFoundError(NotFoundError):
    def __init__(self, vector_store_id: str) -> None:
        super().__init__(
            f"Vector store '{vector_store_id}' not found. "
            "Use client.vector_stores.list() to list vector stores."
        )


class VectorStoreFileNotFoundError(NotFoundError):
    def __init__(self, vector_store_id: str, file_id: str) -> None:
        super().__init__(
            f"File '{file_id}' is not in vector store '{vector_store_id}'. "
            f"Use client.vector_stores.files.list('{vector_store_id}') to list its files."
        )


class OpenAIFileNotFoundError(NotFoundError):
    def __init__(self, file_id: str) -> None:
        super().__init__(
            f"File '{file_id}' not found. Use client.files.list() (GET /v1/openai/v1/files) to list files."
        )


class InvalidRecordError(BadRequestError):
    def __init__(self, label: str, key: str, problem: str) -> None:
        super().__init__(f"Refusing to store {label} '{key}': {problem}. Nothing was changed.")


class UnreadableRecordError(NotFoundError):
    def __init__(self, label: str, key: str, problem: str) -> None:
        super().__init__(
            f"The stored {label} '{key}' cannot be read ({problem}), so it is set aside and not served. "
            "Delete it to remove it."
        )


class OutboundRefusedError(BadRequestError):
    """A connection the policy does not allow; no connection was attempted, so the message is the
    same whatever listens (or not) at that address."""


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


class StorageUnavailableError(ServerBusyError):
    """The database is unreachable (restarting, network down); the request changed nothing and can
    be retried after Retry-After."""


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
