"""Search modes and the fusion of vector and keyword results: one place for vector-io queries,
the RAG tool and vector store search, whatever the provider.

Scores, higher is better in every mode:

- ``vector``: cosine similarity of the query's and the chunk's embeddings, from -1 to 1.
- ``keyword``: the provider's BM25 score (k1 1.2, b 0.75), above 0; chunks that share no term with
  the query are not returned.
- ``hybrid``: both searches fused by a ranker. ``rrf`` (reciprocal rank fusion) scores a chunk
  ``1/(impact_factor + rank)`` per list it appears in, summed: at most ``2/(impact_factor + 1)``.
  ``weighted`` min-max normalises each list's scores to 0..1 (a chunk absent from a list gets 0
  there) and blends them as ``alpha * vector + (1 - alpha) * keyword``: 0..1.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from .apis.vector_io import Ranker, RRFRanker, WeightedRanker
from .errors import BadRequestError

SEARCH_MODES = ("vector", "keyword", "hybrid")
RANKERS = ("rrf", "weighted")
DEFAULT_MODE = "vector"

K = TypeVar("K", bound=Hashable)
_RANKER = TypeAdapter(Ranker)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def search_mode(value: Any, where: str = "params.mode") -> str:
    """The search mode asked for (None means vector), or a 400 naming the modes there are."""
    if value is None:
        return DEFAULT_MODE
    if not isinstance(value, str) or value not in SEARCH_MODES:
        raise BadRequestError(f"{where} {value!r} is not a search mode; use one of {_quoted(SEARCH_MODES)}.")
    return value


def ranker(value: Any, where: str = "params.ranker") -> RRFRanker | WeightedRanker:
    """A ranker from a model, a name ('rrf', 'weighted': their defaults) or a dict with a 'type';
    None means RRF with impact_factor 60."""
    if value is None:
        return RRFRanker()
    if isinstance(value, RRFRanker | WeightedRanker):
        return value
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or value.get("type") not in RANKERS:
        kind = value.get("type") if isinstance(value, dict) else value
        raise BadRequestError(
            f"{where}: ranker {kind!r} is not known; use one of {_quoted(RANKERS)} "
            "(e.g. {'type': 'rrf', 'impact_factor': 60} or {'type': 'weighted', 'alpha': 0.5})."
        )
    try:
        return _RANKER.validate_python(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'ranker'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequestError(
            f"{where}: {problems} (impact_factor must be > 0; alpha from 0 to 1)."
        ) from None


def _ranks(hits: Sequence[tuple[K, float]]) -> dict[K, int]:
    ranks: dict[K, int] = {}
    for key, _ in hits:
        ranks.setdefault(key, len(ranks) + 1)
    return ranks


def _normalised(hits: Sequence[tuple[K, float]]) -> dict[K, float]:
    scores: dict[K, float] = {}
    for key, value in hits:
        scores.setdefault(key, value)
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return dict.fromkeys(scores, 1.0)
    return {key: (value - low) / (high - low) for key, value in scores.items()}


def fuse(
    vector: Sequence[tuple[K, float]],
    keyword: Sequence[tuple[K, float]],
    how: RRFRanker | WeightedRanker,
) -> list[tuple[K, float]]:
    """One ranking from two, each best first; ties keep the vector list's order, then the keyword one's."""
    order = {key: i for i, key in enumerate(dict.fromkeys([k for k, _ in vector] + [k for k, _ in keyword]))}
    if isinstance(how, WeightedRanker):
        v, w = _normalised(vector), _normalised(keyword)
        fused = {key: how.alpha * v.get(key, 0.0) + (1 - how.alpha) * w.get(key, 0.0) for key in order}
    else:
        v_ranks, w_ranks = _ranks(vector), _ranks(keyword)
        fused = {
            key: sum(1.0 / (how.impact_factor + ranks[key]) for ranks in (v_ranks, w_ranks) if key in ranks)
            for key in order
        }
    return sorted(fused.items(), key=lambda item: (-item[1], order[item[0]]))
