"""Secrets in configs: typed so they cannot be shown, and one redaction path for everything shown.

A secret config field is ``Secret`` (a pydantic ``SecretStr`` that serialises as ``********`` in
every mode), read with ``.get_secret_value()`` only where it is used. Anything that shows a config
or other free-form data (``GET /v1/providers``, CLI tables) goes through ``redact``, which also
masks values under secret-looking keys (``api_key``, ``Authorization``, ``password``...) of plain
dicts and the password of URLs such as ``https://user:pass@host``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import pairwise
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, PlainSerializer, SecretBytes, SecretStr

REDACTED = "********"


class SecretValue(SecretStr):
    def _display(self) -> str:  # str() and repr(): the same mask as everywhere else
        return REDACTED


# A SecretStr that shows and serialises as ******** in every mode (pydantic's own json is '**********').
Secret = Annotated[SecretValue, PlainSerializer(lambda _: REDACTED, return_type=str)]

# Words of a key name ('brave_search_api_key', 'X-Subscription-Token', 'apiKey') that mark a credential.
_SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "apikey",
    }
)
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key")})
_WORD_BREAK = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(name: str) -> bool:
    """Whether a field or header name usually holds a credential (e.g. 'brave_search_api_key')."""
    words = [w.lower() for w in _WORD_BREAK.split(name) if w]
    return any(w in _SECRET_WORDS for w in words) or any(p in _SECRET_PAIRS for p in pairwise(words))


def _maskable(value: Any) -> bool:
    return value is not None and value != "" and not isinstance(value, bool | int | float)


def secret_value(secret: SecretStr | None) -> str | None:
    """The value of an optional secret; None when it is unset or empty."""
    value = secret.get_secret_value() if secret is not None else None
    return value or None


def _redact_url(value: str) -> str:
    if "@" not in value or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        if parts.password is None:
            return value
    except ValueError:
        return value
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{REDACTED}@{host}"))


def redact(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with every secret replaced by ``********``."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_secret_key(str(k)) and _maskable(value[k]) else redact(value[k])
            for k in value
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _redact_url(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=str)


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with each given secret value replaced, for messages built from upstream answers."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
