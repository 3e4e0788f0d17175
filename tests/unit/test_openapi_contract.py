"""Our OpenAPI document, derived by FastAPI from the API definitions, against the v0.2.12 reference.

For every route we serve: the path and method exist in the reference; request bodies have the
same field names and required fields; JSON responses have the same field names; enums agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llamastack.stack.server.app import create_app

REFERENCE = Path(__file__).resolve().parents[1] / "contract" / "llama-stack-spec-0.2.12.yaml"

# Fields we add on purpose beyond the reference, with the reason.
EXTENSIONS: dict[tuple[str, str], set[str]] = {
    # OpenAI's API reports token usage and every OpenAI client reads it; the reference omits it.
    ("/v1/openai/v1/chat/completions", "post"): {"usage"},
    ("/v1/openai/v1/completions", "post"): {"usage"},
    # As OpenAI's Responses API has them: token usage, the instructions, why a response is incomplete,
    # the request's metadata and output token cap.
    ("/v1/openai/v1/responses", "post"): {
        "usage",
        "instructions",
        "incomplete_details",
        "metadata",
        "max_output_tokens",
    },
    ("/v1/openai/v1/responses/{response_id}", "get"): {
        "usage",
        "instructions",
        "incomplete_details",
        "metadata",
        "max_output_tokens",
    },
    # OpenAI's input item list pages with these; the reference list has only data and object.
    ("/v1/openai/v1/responses/{response_id}/input_items", "get"): {"has_more", "first_id", "last_id"},
}

# Request fields we accept beyond the reference, with the reason.
REQUEST_EXTENSIONS: dict[tuple[str, str], set[str]] = {
    # Keyword and hybrid vector store search: the v0.2.13 contract adds this field, as is.
    ("/v1/openai/v1/vector_stores/{vector_store_id}/search", "post"): {"search_mode"},
    # `store: false` keeps a chat completion out of the stored list, as at OpenAI.
    ("/v1/openai/v1/chat/completions", "post"): {"store"},
    # OpenAI's Responses sampling, tool and bookkeeping fields, which the reference request lacks; and
    # guardrails (shield ids run over input and output), an extension of ours.
    ("/v1/openai/v1/responses", "post"): {
        "top_p",
        "max_output_tokens",
        "tool_choice",
        "include",
        "metadata",
        "truncation",
        "user",
        "parallel_tool_calls",
        "guardrails",
    },
}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return yaml.safe_load(REFERENCE.read_text())


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return create_app().openapi()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


def _object(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema behind refs and nullable wrappers (anyOf [X, null])."""
    schema = _resolve(doc, schema)
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key, []) if o.get("type") != "null"]
        if len(options) == 1:
            return _object(doc, options[0])
    return schema


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "delete", "put", "patch")
    }


def _enum_of(doc: dict[str, Any], schema: dict[str, Any]) -> set[str] | None:
    schema = _object(doc, schema)
    return set(schema["enum"]) if "enum" in schema else None


# Routes we serve beyond the reference, with the reason.
EXTRA_ROUTES = {
    # Shields can be registered but v0.2.12 has no way to remove one; later contracts add this route.
    ("/v1/shields/{identifier}", "delete"),
    # OpenAI's Responses API deletes a stored response; v0.2.12 has no such operation.
    ("/v1/openai/v1/responses/{response_id}", "delete"),
    # Model discovery on demand: v0.2.12 registers only what it is told (later versions list engines
    # periodically, without a route to ask now).
    ("/v1/models:refresh", "post"),
}


def test_every_route_is_in_the_reference(ours, reference) -> None:
    missing = sorted(set(_operations(ours)) - set(_operations(reference)) - EXTRA_ROUTES)
    assert not missing, f"routes not in the v0.2.12 contract: {missing}"


def test_request_bodies_match(ours, reference) -> None:
    ref_ops = _operations(reference)
    problems = []
    for key, op in _operations(ours).items():
        if key in EXTRA_ROUTES:
            continue
        body = op.get("requestBody")
        if not body:
            continue
        media = next(iter(ref_ops[key]["requestBody"]["content"]))
        if media not in body["content"]:
            problems.append(f"{key}: request body is not {media}")
            continue
        mine = _object(ours, body["content"][media]["schema"])
        theirs = _object(reference, ref_ops[key]["requestBody"]["content"][media]["schema"])
        fields = set(mine.get("properties", {})) - REQUEST_EXTENSIONS.get(key, set())
        if fields != set(theirs.get("properties", {})):
            problems.append(f"{key}: fields {sorted(fields)} != {sorted(theirs['properties'])}")
        if set(mine.get("required", [])) != set(theirs.get("required", [])):
            problems.append(f"{key}: required {mine.get('required')} != {theirs.get('required')}")
        for name, prop in mine.get("properties", {}).items():
            if name in theirs.get("properties", {}):
                a, b = _enum_of(ours, prop), _enum_of(reference, theirs["properties"][name])
                if a is not None and b is not None and a != b:
                    problems.append(f"{key}.{name}: enum {sorted(a)} != {sorted(b)}")
    assert not problems, "\n".join(problems)


def test_json_responses_match(ours, reference) -> None:
    ref_ops = _operations(reference)
    problems = []
    for key, op in _operations(ours).items():
        if key in EXTRA_ROUTES:
            continue
        content = op["responses"].get("200", {}).get("content", {}).get("application/json")
        ref_content = ref_ops[key]["responses"].get("200", {}).get("content", {}).get("application/json")
        if not content or not ref_content or not content.get("schema"):
            continue
        mine = _object(ours, content["schema"])
        theirs = _object(reference, ref_content["schema"])
        if "oneOf" in theirs:  # e.g. a completion or a chunk: compare with the first (non-streamed) form
            theirs = _object(reference, theirs["oneOf"][0])
        mine_fields = set(mine.get("properties", {})) - EXTENSIONS.get(key, set())
        their_fields = set(theirs.get("properties", {}))
        if mine_fields != their_fields:
            problems.append(f"{key}: {sorted(mine_fields ^ their_fields)} differ")
    assert not problems, "\n".join(problems)
