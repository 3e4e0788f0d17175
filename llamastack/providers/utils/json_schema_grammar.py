"""JSON schemas for constrained decoding: what grammars can enforce, and the schema of a tool call.

llama.cpp (and other engines with grammar support) turn a JSON schema into a grammar, but only
some keywords constrain the output; the rest would be silently ignored and the document could
then fail validation. We reject those up front with a 400 naming each one and where it is.
"""

from __future__ import annotations

from typing import Any

from llamastack.stack.apis.inference.core import ToolSpec
from llamastack.stack.errors import UnsupportedError

# Keywords a grammar enforces, and annotations that do not constrain anything.
_ENFORCED = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "pattern",
    "minLength",
    "maxLength",
    "format",
}
_ANNOTATIONS = {
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "nullable",
    "strict",
}
_FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def unsupported_features(schema: Any, path: str = "$") -> list[str]:
    """Every keyword in ``schema`` a grammar cannot enforce, as 'keyword at path'."""
    problems: list[str] = []
    if isinstance(schema, bool):
        return problems
    if not isinstance(schema, dict):
        return [f"a non-object schema at {path}"]
    for key, value in schema.items():
        where = f"{path}.{key}"
        if key.startswith("x-") or key in _ANNOTATIONS:
            continue
        if key not in _ENFORCED:
            problems.append(f"'{key}' at {path}")
            continue
        if key == "format" and value not in _FORMATS:
            problems.append(f"format '{value}' at {path}")
        elif key == "type":
            kinds = value if isinstance(value, list) else [value]
            problems += [f"type '{k}' at {path}" for k in kinds if k not in _TYPES]
        elif key == "$ref" and not str(value).startswith("#/"):
            problems.append(f"external $ref '{value}' at {path}")
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                problems += unsupported_features(sub, f"{where}.{name}")
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            for i, sub in enumerate(value):
                problems += unsupported_features(sub, f"{where}[{i}]")
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            problems += unsupported_features(value, where)
    return problems


def check_enforceable(schema: dict[str, Any], what: str) -> None:
    problems = unsupported_features(schema)
    if problems:
        raise UnsupportedError(
            f"{what} uses JSON schema features that constrained decoding cannot enforce: "
            f"{', '.join(problems)}. Remove them or validate those constraints yourself."
        )


def closed(schema: Any) -> Any:
    """The schema with additionalProperties: false wherever an object lists its properties.

    Valid documents stay valid; a small model can no longer wander off into extra keys.
    """
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: closed(v) if k not in ("const", "enum", "default", "examples") else v for k, v in schema.items()
    }
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def tool_call_schema(tools: list[ToolSpec], only: str | None = None) -> dict[str, Any]:
    """The JSON schema of one call, ``{"name": ..., "parameters": {...}}``, to any tool (or ``only``)."""
    chosen = [t for t in tools if only is None or t.name == only]
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "parameters": closed(t.parameters)},
            "required": ["name", "parameters"],
            "additionalProperties": False,
        }
        for t in chosen
    ]
    for tool in chosen:
        check_enforceable(tool.parameters, f"The parameters of tool '{tool.name}'")
    return options[0] if len(options) == 1 else {"anyOf": options}
