"""Paging a search result: page tokens, the snapshot a walk is computed against, and the walk order.

**The guarantee.** The first page of a search fixes a ``Snapshot``; every link the server hands out
(``first``, ``next``, ``previous``) carries it in its ``_cursor`` token. Walking the pages of one
search, even while other clients create, update and delete resources:

- every resource that matched when the first page was read, and that still matches and is not
  deleted when the page holding it is read, is returned exactly once;
- no resource is returned twice, and each entry is the resource's current version when its page is
  read;
- resources created after the first page are not returned (nor counted); resources deleted, or
  changed so they no longer match, before their page is read are not returned;
- a resource that starts to match during the walk is returned at most once.

**How.** Pages are cut by keyset: each link names the position (sort values, then an immutable
tie-breaker) of the entry it continues from, never an offset, so inserts and deletes elsewhere
cannot shift a page. Positions must not move either: without ``_sort`` they do not (the tie-breaker
is a creation key); with ``_sort`` a resource keeps the place of its *walk version*, the version
current at ``snapshot.stable``, even when a later update changes its sort values. The storage returns
the resources written since ``stable`` apart (``SearchPage.changed``); ``place_changed`` computes
their walk positions from the old version and ``merge`` slots them in. ``stable`` trails the first
page by ``STABLE_MARGIN``, which must exceed the time between a write taking its ``lastUpdated`` and
committing (milliseconds in practice). A sorted walk that has to place more than ``CHANGED_LIMIT``
changed resources on one page answers 410: the client starts the search again.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from fhir_server.errors import FhirError, bad_request
from fhir_server.search.index_values import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.plan import Position, SortKey, Snapshot
from fhir_server.service.stamping import now_ms
from fhir_server.storage.base import CHANGED_LIMIT, ChangedMatch, Hit, StoredResource

CURSOR = "_cursor"
STABLE_MARGIN = timedelta(seconds=2)
_NUMERIC_SORTS = frozenset({"date", "number", "quantity"})


def new_snapshot() -> Snapshot:
    began = now_ms()
    return Snapshot(began - STABLE_MARGIN, began)


def sort_signature(keys: Sequence[SortKey]) -> str:
    return ",".join(("-" if k.descending else "") + k.param for k in keys)


@dataclass(frozen=True, slots=True)
class PageToken:
    """What a paging link carries in ``_cursor``: the walk's snapshot, the ``_sort`` its positions
    belong to, where the page starts (after) or ends (before), and the total counted on the first
    page, so later pages need not count again."""

    snapshot: Snapshot
    sort: str
    after: Position | None = None
    before: Position | None = None
    total: int | None = None

    def encode(self) -> str:
        data: dict[str, Any] = {"s": _ms(self.snapshot.stable), "b": _ms(self.snapshot.began), "o": self.sort}
        if self.after is not None:
            data["a"] = list(self.after)
        if self.before is not None:
            data["p"] = list(self.before)
        if self.total is not None:
            data["n"] = self.total
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str, keys: Sequence[SortKey]) -> PageToken:
        """The token of a link this server issued for a search sorted by ``keys``; 400 otherwise."""
        try:
            data = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            snapshot = Snapshot(_from_ms(data["s"]), _from_ms(data["b"]))
            token = cls(snapshot, data["o"], _position(data.get("a"), keys), _position(data.get("p"), keys),
                        data.get("n"))
            if token.sort != sort_signature(keys) or not (token.total is None or _is_count(token.total)):
                raise ValueError("the token belongs to another search")
        except (ValueError, TypeError, KeyError, binascii.Error, orjson.JSONDecodeError, OverflowError, OSError):
            raise bad_request(f"{CURSOR}: not a page token of this search; follow the links of the search result",
                              expression=(CURSOR,)) from None
        return token


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _position(value: Any, keys: Sequence[SortKey]) -> Position | None:
    """A position from a token: one value per sort key of the right kind, then a tie-breaker."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != len(keys) + 1 or value[-1] is None:
        raise ValueError("malformed position")
    for key, item in zip(keys, value, strict=False):
        numeric = key.param != "_id" and (key.param == "_lastUpdated" or key.param_type in _NUMERIC_SORTS)
        if item is not None and not (_is_number(item) if numeric else type(item) is str):
            raise ValueError("malformed position")
    if not (type(value[-1]) is str or _is_number(value[-1]) and type(value[-1]) is int):
        raise ValueError("malformed position")
    return tuple(value)


def _is_number(value: Any) -> bool:
    """A number both stores can compare: a float, or an integer of at most 64 bits."""
    return type(value) is float or (type(value) is int and -(2**63) <= value < 2**63)


def _ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _from_ms(value: Any) -> datetime:
    if type(value) is not int:
        raise ValueError("not a moment")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)


# --- the walk order ----------------------------------------------------------------------------------

class _Descending:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and bool(self.value == other.value)


def order_key(keys: Sequence[SortKey], position: Position) -> tuple[Any, ...]:
    """A Python sort key equal to the storage order: each sort value (missing last in either
    direction), then the tie-breaker ascending."""
    parts: list[Any] = []
    for key, value in zip(keys, position, strict=False):
        if value is None:
            parts.append((1,))
        else:
            parts.append((0, _Descending(value) if key.descending else value))
    return (*parts, *position[len(keys):])


def sort_values(keys: Sequence[SortKey], stored: StoredResource, extract: Callable[[Any], Iterable[IndexValue]]
                ) -> tuple[Any, ...]:
    """The sort values of one version, computed like the storage computes them from its index: the
    smallest value ascending, the largest descending (a date's start ascending and end descending)."""
    values = list(extract(orjson.loads(stored.body))) if any(k.param not in ("_id", "_lastUpdated")
                                                              for k in keys) else []
    result = []
    for key in keys:
        if key.param == "_id":
            result.append(stored.id)
        elif key.param == "_lastUpdated":
            result.append(_ms(stored.last_updated))
        else:
            found = [v for v in (_sort_value(value, key.descending) for value in values if value.param == key.param)
                     if v is not None]
            result.append((max(found) if key.descending else min(found)) if found else None)
    return tuple(result)


def _sort_value(value: IndexValue, descending: bool) -> Any:
    if isinstance(value, StringValue):
        return value.normalized
    if isinstance(value, TokenValue):
        return value.code
    if isinstance(value, ReferenceValue):
        return value.target_id
    if isinstance(value, DateValue):
        return value.high if descending else value.low
    if isinstance(value, NumberValue | QuantityValue):
        return value.value
    if isinstance(value, UriValue):
        return value.uri
    return None


def place_changed(keys: Sequence[SortKey], snapshot: Snapshot, changed: Sequence[ChangedMatch],
                  extract: Callable[[Any], Iterable[IndexValue]]) -> list[Hit]:
    """The changed matches that belong to the walk, at the positions of their walk versions."""
    if len(changed) > CHANGED_LIMIT:
        raise FhirError(410, "expired", "too many resources of this result changed since its first page; "
                                        "run the search again")
    placed = []
    for match in changed:
        walk = match.at_stable
        if walk is None or walk.deleted:
            walk = match.after_stable
            if walk is None or walk.deleted or walk.last_updated > snapshot.began:
                continue
        placed.append(Hit(match.stored, (*sort_values(keys, walk, extract), *match.tiebreak)))
    return placed


def merge(keys: Sequence[SortKey], hits: Sequence[Hit], placed: Sequence[Hit], count: int, after: Position | None,
          before: Position | None) -> tuple[list[Hit], bool]:
    """The page: ``hits`` (the storage's, in walk order, or nearest first when ending ``before``) and
    the ``placed`` changed matches beyond the cursor, in walk order; and whether more entries lie
    beyond the page in the walking direction."""
    forward = before is None
    cursor = after if forward else before
    candidates = {(h.stored.resource_type, h.stored.id): h for h in hits}
    try:
        bound = order_key(keys, cursor) if cursor is not None else None
        for hit in placed:
            position = order_key(keys, hit.position)
            if bound is None or (bound < position if forward else position < bound):
                candidates[(hit.stored.resource_type, hit.stored.id)] = hit
        ordered = sorted(candidates.values(), key=lambda h: order_key(keys, h.position), reverse=not forward)
    except TypeError:
        raise bad_request(f"{CURSOR}: not a page token of this search", expression=(CURSOR,)) from None
    page = ordered[:count]
    if not forward:
        page.reverse()
    return page, len(ordered) > count
