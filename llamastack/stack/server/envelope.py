"""The one shape of an error response, shared by the exception handlers and the middlewares."""

from __future__ import annotations

OPENAI_PREFIX = "/v1/openai/"


def error_body(path: str, status: int, title: str, detail: str) -> dict[str, object]:
    body: dict[str, object] = {"status": status, "title": title, "detail": detail}
    if path.startswith(OPENAI_PREFIX):
        # OpenAI SDKs read error.message; native clients read detail. Both are present.
        body = {"error": {"message": detail, "type": title.lower().replace(" ", "_"), "code": status}, **body}
    return body
