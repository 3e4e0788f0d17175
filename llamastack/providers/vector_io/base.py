"""Helpers shared by vector_io providers. What a provider implements (VectorIOProvider) and the
chunk record it stores (StoredChunk) are part of the API, in llamastack.stack.apis.vector_io."""

from __future__ import annotations

import hashlib
import re

__all__ = ["storage_name"]


def storage_name(identifier: str, prefix: str = "vdb") -> str:
    """A name that storage engines accept (letters, digits, _), unique per identifier."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", identifier).strip("_")[:40] or "db"
    return f"{prefix}_{slug}_{hashlib.sha256(identifier.encode()).hexdigest()[:10]}"
