"""The backend-neutral search plan: what a query string means, before any storage compiles it.

The query parser (``search.query``) produces a ``SearchPlan``; each storage backend compiles it to SQL
or a MongoDB filter against the index values of ``search.index_values``. All values are already
normalized the way the index stores them, so a backend only compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Prefix(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    LT = "lt"
    GE = "ge"
    LE = "le"
    SA = "sa"
    EB = "eb"
    AP = "ap"


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """``code`` (any system), ``|code`` (no system), ``system|code`` or ``system|`` (any code)."""

    system: str | None
    code: str | None
    match_system: bool  # False: any system
    match_code: bool = True  # False: any code within ``system``


@dataclass(frozen=True, slots=True)
class TokenTextMatch:
    """``:text``: a normalized prefix match on the token's display text."""

    text: str


@dataclass(frozen=True, slots=True)
class StringMatch:
    value: str  # normalized for "prefix"/"contains", as given for "exact"
    mode: str = "prefix"  # "prefix" | "exact" | "contains"


@dataclass(frozen=True, slots=True)
class ReferenceMatch:
    """A reference by ``url`` (absolute or canonical, matched literally), or by type and id: then it
    matches relative references and absolute ones on this server (their URL starts with
    ``local_base``, this server's base URL with a trailing slash; None: relative references only),
    never a reference to another server that happens to end in the same ``Type/id``."""

    target_type: str | None  # None: any type (bare id, or :[type] not given)
    target_id: str | None
    url: str | None = None
    local_base: str | None = None


@dataclass(frozen=True, slots=True)
class RangeMatch:
    """Date, number and quantity comparisons: the search value's own range ``[low, high)`` at its
    precision, compared to the stored range with the prefix's semantics (search.html)."""

    prefix: Prefix
    low: float | int
    high: float | int
    system: str | None = None  # quantity only
    code: str | None = None  # quantity only


@dataclass(frozen=True, slots=True)
class UriMatch:
    uri: str
    mode: str = "exact"  # "exact" | "above" | "below"

    def ancestors(self) -> list[str]:
        """For ``:above``: the URI and every URI it is under, path segment by segment (with and
        without the trailing slash), never cut inside a segment or before the authority:
        ``http://a.org/fhir/ValueSet/123`` is under ``http://a.org/fhir/ValueSet`` and
        ``http://a.org/``, not under ``http://a.org/fhir/Value``."""
        uri = self.uri
        scheme = uri.find("://")
        start = uri.find("/", scheme + 3) if scheme >= 0 else uri.find("/")
        found = [uri]
        while start >= 0:
            found += [uri[:start], uri[:start + 1]]
            start = uri.find("/", start + 1)
        return list(dict.fromkeys(p for p in found if p))


@dataclass(frozen=True, slots=True)
class MissingMatch:
    missing: bool


@dataclass(frozen=True, slots=True)
class CompositeMatch:
    parts: tuple[Match, ...]
    part_types: tuple[str, ...]  # the component parameters' types, one per part


Match = (
    TokenMatch | TokenTextMatch | StringMatch | ReferenceMatch | RangeMatch | UriMatch | MissingMatch | CompositeMatch
)


@dataclass(frozen=True, slots=True)
class Criterion:
    """One parameter occurrence: its values are ORed; criteria in a plan are ANDed."""

    resource_type: str
    param: str
    param_type: str  # "string" | "token" | "reference" | "date" | "number" | "quantity" | "uri" | "composite"
    matches: tuple[Match, ...]
    negate: bool = False  # :not: resources with no value matching
    guard: bool = False  # an access rule's (the record holder): filters every candidate, never selects them


@dataclass(frozen=True, slots=True)
class ChainCriterion:
    """``subject:Patient.name=x``: resources whose reference ``param`` points at a ``target_type``
    resource satisfying ``inner`` (which may itself be a chain)."""

    resource_type: str
    param: str
    target_type: str
    inner: Criterion | ChainCriterion | ChainAnyCriterion | HasCriterion
    guard: tuple[AnyCriterion, ...] = ()  # also ANDed on the target (the access policy's row rule)


@dataclass(frozen=True, slots=True)
class ChainAnyCriterion:
    """``subject.name=x`` when several target types of ``param`` have the chained parameter: resources
    whose reference points at a resource of any of them satisfying the rest of the chain. One
    ``ChainCriterion`` per target type, each with that type's own inner criterion, all through
    ``resource_type``'s ``param``."""

    resource_type: str
    param: str
    alternatives: tuple[ChainCriterion, ...]  # at least two, each of a different target type


@dataclass(frozen=True, slots=True)
class HasCriterion:
    """``_has:Observation:patient:code=x``: resources referenced through ``source_param`` by a
    ``source_type`` resource satisfying ``inner``."""

    resource_type: str
    source_type: str
    source_param: str
    inner: Criterion | ChainCriterion | ChainAnyCriterion | HasCriterion
    guard: tuple[AnyCriterion, ...] = ()  # also ANDed on the source (the access policy's row rule)


@dataclass(frozen=True, slots=True)
class CompartmentCriterion:
    """Compartment search (``Patient/123/Observation``): resources whose reference parameter of one
    of ``pkeys`` (``"Observation.subject"``, the CompartmentDefinition's) points at
    ``compartment_type/compartment_id``."""

    resource_type: str
    pkeys: tuple[str, ...]
    compartment_type: str
    compartment_id: str


AnyCriterion = Criterion | ChainCriterion | ChainAnyCriterion | HasCriterion | CompartmentCriterion


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str
    param_type: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Source:param[:Target]`` (``reverse`` for ``_revinclude``); ``param`` ``*`` = all."""

    source_type: str
    param: str
    target_type: str | None = None
    reverse: bool = False
    iterate: bool = False


Position = tuple[Any, ...]
"""A resource's place in a search's order: its sort values (``None`` for a missing one), then the
storage's tie-breaker (immutable, unique per resource)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """When a paged search began; every page of the walk is computed against the same snapshot.

    A resource belongs to the walk when it was created at or before ``began``. Its place in a sorted
    walk comes from its *walk version*: the version current at ``stable``, or, for a resource with
    none (or a deletion) then, the next one. ``stable`` is a little earlier than ``began``: every
    version written at or before it had committed when the first page was read."""

    stable: datetime
    began: datetime


@dataclass(slots=True)
class SearchPlan:
    resource_types: tuple[str, ...]  # one for a type search; several (or all) for a system search
    criteria: list[AnyCriterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 20
    total: str | None = None  # "none" | "estimate" | "accurate"; None: the server's choice
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] = ()
    ignored: list[str] = field(default_factory=list)  # unknown parameters, reported in an outcome entry
    cursor: str | None = None  # ``_cursor``: the page token of a link this server issued
    snapshot: Snapshot | None = None  # None: no paging walk (every current match counts)
    after: Position | None = None  # the page starts right after this position ...
    before: Position | None = None  # ... or ends right before this one
    tally: int | None = None  # count the walk's members up to this many along with the page, if the store can
