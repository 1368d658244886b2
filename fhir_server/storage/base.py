"""The storage interface every backend implements (SQLite embedded, MongoDB production).

Storage knows versions, history, index values and search plans; it knows nothing about HTTP or
FHIR rules. Writes happen only inside ``run_in_transaction``: the service passes a function that
reads, searches and writes through a ``StorageTransaction``; the backend makes the whole function
atomic and isolated (retrying it on a write conflict where the engine needs that), so version checks
and conditional creates made inside it cannot race.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from fhir_server.search.index_values import IndexValue
from fhir_server.search.plan import AnyCriterion, Include, Position, SearchPlan

T = TypeVar("T")


HOLDER_SYSTEM = "urn:fhir-server:record-holder"
"""``meta.security`` system of a resource's record holders (codes ``Organization/{id}``), set by the
service from the writer's facility. The stores keep the codes beside each resource, so that the
access policy's holder check costs a lookup in a small index, not a search of the token index."""


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored. ``body`` is the exact JSON sent back to clients
    (empty for a deletion). ``holders``: its record-holder codes, when the store read them from
    where it keeps them beside the body (the access policy then need not parse the body for them);
    None: they are only in ``body``."""

    resource_type: str
    id: str
    version: int
    last_updated: datetime  # timezone-aware UTC, millisecond precision
    deleted: bool
    body: bytes
    holders: tuple[str, ...] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ResourceWrite:
    """A new version to store: becomes the current version, is appended to history and replaces the
    resource's index values (a deletion removes them)."""

    resource_type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    body: bytes
    index: Sequence[IndexValue] = ()


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    resource_type: str | None = None  # None: whole system
    id: str | None = None  # with resource_type: one instance
    since: datetime | None = None  # versions with last_updated >= since
    at: tuple[datetime, datetime] | None = None  # versions current at some moment in [low, high)
    count: int = 20
    before: tuple[datetime, str] | None = None  # keyset cursor: strictly older than this (time, key)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[StoredResource]  # newest first
    total: int | None
    next_cursor: tuple[datetime, str] | None  # pass as ``before`` for the next page


CHANGED_LIMIT = 2000
"""The most changed matches (see ``SearchPage.changed``) a page of a sorted walk may have to place."""


@dataclass(frozen=True, slots=True)
class Hit:
    stored: StoredResource
    position: Position  # the values the storage sorted by, then its tie-breaker


@dataclass(frozen=True, slots=True)
class ChangedMatch:
    """A current match of a sorted walk written after ``snapshot.stable``: its place in the walk comes
    from an older version (``Snapshot``), which the caller computes from ``at_stable``, the latest
    version written at or before ``stable``, or ``after_stable``, the first one written after it."""

    stored: StoredResource
    tiebreak: Position
    at_stable: StoredResource | None
    after_stable: StoredResource | None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """``hits``: at most ``plan.count + 1`` members of the walk in order, starting after
    ``plan.after`` or, nearest first, ending before ``plan.before``. For a sorted walk, members
    written after ``snapshot.stable`` are not among them: they come as ``changed`` (all of them, up to
    ``CHANGED_LIMIT + 1``), for the caller to place. ``tally``: when the plan asked for one
    (``plan.tally``) and the store could count while finding the page, the walk's members counted
    up to that many; None leaves the count to ``Storage.count``."""

    hits: list[Hit]
    changed: list[ChangedMatch]
    tally: int | None = None


MAX_INCLUDE_ROUNDS = 4  # _include:iterate follows at most this many levels


def gather_includes(matches: Sequence[StoredResource], includes: Sequence[Include],
                    include_one: Callable[[list[StoredResource], Include], list[StoredResource]]
                    ) -> list[StoredResource]:
    """``Storage.includes`` for any backend: rounds of ``include_one`` (the resources one include
    adds to a frontier), the iterating includes following what the previous round added."""
    seen = {(m.resource_type, m.id) for m in matches}
    found: list[StoredResource] = []
    frontier = list(matches)
    for round_ in range(MAX_INCLUDE_ROUNDS):
        active = [inc for inc in includes if round_ == 0 or inc.iterate]
        if not active or not frontier:
            break
        added: list[StoredResource] = []
        for inc in active:
            for stored in include_one(frontier, inc):
                key = (stored.resource_type, stored.id)
                if key not in seen:
                    seen.add(key)
                    added.append(stored)
        found += added
        frontier = added
    return found


def history_key(resource_type: str, id: str, version: int) -> str:
    """Tie-breaker for history entries with the same timestamp, ordered as (type, id, version)."""
    return f"{resource_type}/{id}/{version}"


class StorageTransaction(Protocol):
    def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version (a tombstone when deleted), or None if never stored."""

    def find(self, resource_type: str, criteria: Sequence[AnyCriterion], limit: int) -> list[StoredResource]:
        """Current, non-deleted resources matching all criteria; at most ``limit``."""

    def write(self, change: ResourceWrite) -> None:
        ...

    def write_many(self, changes: Sequence[ResourceWrite]) -> None:
        """``write`` each change, in order, with as few statements as the engine allows."""

    def claim(self, key: str) -> None:
        """Serialize concurrent transactions that use the same key (e.g. a conditional create's
        criteria): the later one waits for or retries after the earlier one."""


class Storage(Protocol):
    def read(self, resource_type: str, id: str) -> StoredResource | None:
        ...

    def read_version(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        ...

    def history(self, query: HistoryQuery) -> HistoryPage:
        ...

    def search(self, plan: SearchPlan) -> SearchPage:
        """One page of current, non-deleted matches. With ``plan.snapshot``, only the walk's members
        (created at or before ``snapshot.began``); without one, every match is a hit."""

    def count(self, plan: SearchPlan, limit: int | None = None) -> int:
        """How many hits the whole walk has (not its ``changed`` matches), counting at most ``limit``."""

    def includes(self, matches: Sequence[StoredResource], includes: Sequence[Include]) -> list[StoredResource]:
        """Current resources that ``_include``/``_revinclude`` add to ``matches`` (not among them)."""

    def run_in_transaction(self, work: Callable[[StorageTransaction], T]) -> T:
        ...

    def yield_to_writes(self) -> None:
        """Return when no other thread of this process is inside ``run_in_transaction`` holding a
        lock other writers wait for. Called before CPU-bound work that needs no stored data
        (validating, indexing a write), so the lock holder is not slowed by this process's other
        threads taking the CPU (and Python's interpreter lock) from it."""

    def close(self) -> None:
        ...
