"""schemathesis hooks for tests/integration/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

- Generated URLs are replaced by a closed port on loopback: nothing the fuzzer makes the server fetch
  can leave the machine.
- Ids in paths and bodies are, for about half of the generated cases, swapped for resources the
  test created (the chat model, an agent and its session, a vector db, a vector store, a file...), so
  the fuzzer reaches the code behind the 404s, not only the 404s.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import schemathesis

# Port 9 (discard) on loopback: nothing listens there in the tests, and nothing leaves the machine.
LOOPBACK_URL = "http://127.0.0.1:9/fuzz"
_URL_PREFIXES = ("http:", "https:", "ws:", "wss:", "ftp:", "//", "file:")

_IDS: dict[str, Any] = json.loads(os.environ.get("FUZZ_IDS", "{}"))

# Body fields and path parameters that name a resource, to the key of the created one.
_ALIASES = {
    "model": "model_id",
    "model_id": "model_id",
    "embedding_model": "embedding_model",
    "shield_id": "shield_id",
    "vector_db_id": "vector_db_id",
    "vector_store_id": "vector_store_id",
    "file_id": "file_id",
    "agent_id": "agent_id",
    "session_id": "session_id",
    "toolgroup_id": "toolgroup_id",
    "tool_name": "tool_name",
    "provider_id": "provider_id",
    "identifier": "model_id",
}


def _coin(value: Any) -> bool:
    """Deterministic in the generated value, so a seed reproduces its run."""
    return zlib.crc32(repr(value).encode()) % 2 == 0


def _known(name: str, value: Any) -> Any:
    key = _ALIASES.get(name)
    if key is None or key not in _IDS or not _coin(value):
        return value
    return _IDS[key]


def _rewrite(value: Any, name: str = "") -> Any:
    if isinstance(value, str):
        if value.lower().startswith(_URL_PREFIXES):
            return LOOPBACK_URL
        return _known(name, value)
    if isinstance(value, dict):
        return {k: _rewrite(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        if name in ("vector_db_ids", "vector_store_ids") and _coin(value) and name[:-1] in _IDS:
            return [_IDS[name[:-1]]]
        return [_rewrite(v, name) for v in value]
    return value


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    return _rewrite(body)


@schemathesis.hook
def map_query(ctx: Any, query: Any) -> Any:
    return _rewrite(query)


@schemathesis.hook
def map_path_parameters(ctx: Any, path_parameters: Any) -> Any:
    return _rewrite(path_parameters)
