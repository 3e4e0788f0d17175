"""One way to cut a list into pages, for every list route: by offset (`start_index`, the Agents API)
or by cursor (`after` / `before` an item's id, the OpenAI-style lists)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import BadRequestError

__all__ = ["Page", "paginate"]


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None


def _unknown_cursor(name: str, ident: str) -> str:
    return f"{name}: '{ident}' is not in this list."


def _item_id(item: object) -> str:
    return str(item.id)  # type: ignore[attr-defined]


def paginate(
    items: Sequence[T],
    *,
    limit: int | None = None,
    start_index: int | None = None,
    after: str | None = None,
    before: str | None = None,
    keep: Callable[[T], bool] | None = None,
    id_of: Callable[[T], str] = _item_id,
    unknown_cursor: Callable[[str, str], str] = _unknown_cursor,
) -> Page[T]:
    """The page of `items` (already in list order) that the query asks for.

    Cursors are positions in `items` as given; `keep` filters what follows the cursor, so a cursor
    stays valid under any filter (the Files API's `purpose`). An unknown cursor is a 400 whose message
    `unknown_cursor(field, id)` gives. `limit` None means everything that is left."""
    if start_index is not None and start_index < 0:
        raise BadRequestError(f"start_index must be 0 or more, got {start_index}.")
    if limit is not None and limit < 0:
        raise BadRequestError(f"limit must be 0 or more, got {limit}.")
    rest: Sequence[T] = items[start_index or 0 :]
    if after is not None:
        ids = [id_of(i) for i in rest]
        if after not in ids:
            raise BadRequestError(unknown_cursor("after", after))
        rest = rest[ids.index(after) + 1 :]
    if before is not None:
        ids = [id_of(i) for i in rest]
        if before not in ids:
            raise BadRequestError(unknown_cursor("before", before))
        rest = rest[: ids.index(before)]
    matching = [i for i in rest if keep is None or keep(i)]
    page = matching if limit is None else matching[:limit]
    return Page(
        data=page,
        has_more=len(matching) > len(page),
        first_id=id_of(page[0]) if page else None,
        last_id=id_of(page[-1]) if page else None,
    )
