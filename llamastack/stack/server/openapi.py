"""The published OpenAPI document: FastAPI's, with the error responses the server really sends.

FastAPI documents a 422 on every operation, which this server never sends (validation problems are a
400 with a ``detail``). Each operation instead lists the error statuses the error handlers produce,
all with the one error body, so clients and schema-driven tools know what to expect.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "description": "Every error response. Routes under /v1/openai/v1 also carry OpenAI's `error` object.",
    "properties": {
        "status": {"type": "integer", "description": "The HTTP status, repeated."},
        "title": {"type": "string", "description": "The status' name, e.g. 'Bad Request'."},
        "detail": {"type": "string", "description": "What went wrong and what to do about it."},
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "integer"},
            },
            "required": ["message", "type", "code"],
        },
    },
    "required": ["status", "title", "detail"],
}

ERROR_STATUSES = {
    "400": "The request is malformed or asks for something the model or provider cannot do.",
    "401": "An API key is required (server.auth) and none, or an unknown one, was sent.",
    "403": "The API key may not change this resource (run-config resources need an admin key).",
    "404": "A resource the request names does not exist (or belongs to another API key).",
    "409": "The resource already exists or is in a state that forbids the change.",
    "413": "The request body or upload is larger than the server accepts.",
    "421": "The Host header names a host this server does not answer to (DNS-rebinding defence).",
    "429": "Too many requests for this client; retry after the time in Retry-After.",
    "503": "The model's queue is full, or its remote engine is unreachable; retry after Retry-After.",
}


def _document_errors(schema: dict[str, Any]) -> None:
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in ERROR_STATUSES.items():
                entry: dict[str, Any] = {
                    "description": description,
                    "content": {"application/json": {"schema": ref}},
                }
                if status in ("429", "503"):
                    entry["headers"] = {
                        "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
                    }
                responses.setdefault(status, entry)
    schemas = schema["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
