"""Type, system and compartment search: query → SearchPlan → storage → searchset Bundle.

Paging follows ``service.paging`` (keyset links that carry the walk's snapshot). Totals
(``_total``):

- ``accurate``: counted exactly, on every page;
- ``none``: never counted;
- by default and for ``estimate``: counted on the first page only, and only up to ``total_limit``
  matches (larger results get no ``Bundle.total``); later pages repeat the first page's figure from
  their page token;
- ``_count=0`` and ``_summary=count`` return the total (counted exactly unless ``_total=none``) and no
  entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consent.policy import AccessPolicy
from fhir_server.errors import Issue, bad_request, operation_outcome
from fhir_server.search.compartments import membership
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.plan import CompartmentCriterion, SearchPlan
from fhir_server.search.query import check_subsetting, parse_elements, parse_search, parse_summary
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.bundles import bundle, page_url, search_entry
from fhir_server.service.paging import (
    CURSOR,
    PageToken,
    merge,
    new_snapshot,
    place_changed,
    sort_signature,
)
from fhir_server.service.subsetting import Subsetter
from fhir_server.storage.base import Hit, Storage, StoredResource


class SearchService:
    def __init__(self, storage: Storage, registry: SearchRegistry, extractor: IndexExtractor, subsetter: Subsetter,
                 *, default_count: int, max_count: int, total_limit: int) -> None:
        self.storage = storage
        self.registry = registry
        self.extractor = extractor
        self.subsetter = subsetter
        self.default_count = default_count
        self.max_count = max_count
        self.total_limit = total_limit

    def search(self, policy: AccessPolicy, base_url: str, resource_type: str | None,
               params: Sequence[tuple[str, str]], *, strict: bool,
               compartment: tuple[str, str] | None = None) -> dict[str, Any]:
        """The searchset Bundle for ``params`` over ``resource_type`` (None: a system search), within
        ``compartment`` (``("Patient", "123")``) when given."""
        plan = parse_search(resource_type, list(params), self.registry, strict=strict,
                            default_count=self.default_count, max_count=self.max_count, base_url=base_url)
        for t in plan.resource_types:
            policy.require_read(t)
        if compartment is not None:
            plan.criteria.insert(0, self._compartment(compartment, plan.resource_types))
        policy.restrict(plan)
        token = PageToken.decode(plan.cursor, plan.sort) if plan.cursor is not None else None
        plan.snapshot = token.snapshot if token else new_snapshot()
        if token is not None:
            plan.after, plan.before = token.after, token.before
        page_size = plan.count
        if plan.summary == "count":
            plan.count = 0
        if plan.total not in ("none", "accurate") and plan.count > 0 and token is None:
            plan.tally = self.total_limit + 1  # a first page's bounded count, found with the page if the store can
        page = self.storage.search(plan)
        placed = place_changed(plan.sort, plan.snapshot, page.changed, self.extractor.extract) if page.changed else []
        hits, more = merge(plan.sort, page.hits, placed, plan.count, plan.after, plan.before)
        total = self._total(plan, token, len(placed), page.tally)
        matches = [policy.shown(h.stored) for h in hits]
        entries = [self._entry(base_url, s, "match", plan) for s in matches]
        included = policy.visible(self.storage.includes(matches, plan.includes)) if plan.includes and matches else []
        entries += [self._entry(base_url, s, "include", plan) for s in included]
        policy.disclosed("search", "/".join([*(compartment or ()), *([resource_type] if resource_type else [])]),
                         [*matches, *included])
        if plan.ignored:
            outcome = operation_outcome(
                [Issue("warning", "not-supported", f"unknown search parameter {name!r} was ignored")
                 for name in plan.ignored])
            entries.append({"resource": outcome, "search": {"mode": "outcome"}})
        path = "/".join([*(compartment or ()), *([resource_type] if resource_type else [])])
        walk = PageToken(plan.snapshot, sort_signature(plan.sort), total=total if plan.total != "accurate" else None)
        links = _links(base_url, path, params, page_size, plan, walk, hits, more)
        return bundle("searchset", entries, links, total)

    def subset_read(self, stored: StoredResource, params: Sequence[tuple[str, str]]) -> bytes:
        """The body a read or vread returns: reduced as ``_summary`` / ``_elements`` ask (other
        parameters are ignored), else the stored bytes themselves."""
        summary, elements = None, ()
        for name, value in params:
            if name == "_summary":
                summary = parse_summary(value)
                if summary == "count":
                    raise bad_request("_summary=count applies to searches only", expression=("_summary",))
            elif name == "_elements":
                elements = parse_elements(value, self.registry)
        check_subsetting(summary, elements)
        if summary is None and not elements:
            return stored.body
        return self.subsetter.subset(stored.body, stored.resource_type, summary, elements)

    def _compartment(self, compartment: tuple[str, str], types: tuple[str, ...]) -> CompartmentCriterion:
        compartment_type, compartment_id = compartment
        members = membership(compartment_type, self.registry)
        outside = [t for t in types if t not in members]
        if outside:
            raise bad_request(f"{', '.join(outside)} resources are never in a {compartment_type} compartment")
        pkeys = tuple(f"{t}.{param}" for t in types for param in members[t])
        return CompartmentCriterion(types[0], pkeys, compartment_type, compartment_id)

    def _total(self, plan: SearchPlan, token: PageToken | None, placed: int, tally: int | None) -> int | None:
        if plan.total == "none":
            return None
        exact = plan.total == "accurate" or plan.count == 0
        if not exact and token is not None:
            return token.total
        if tally is not None:  # asked for only where the count is bounded
            counted = tally
        else:
            counted = self.storage.count(plan, None if exact else self.total_limit + 1)
        if not exact and counted > self.total_limit:
            return None
        return counted + placed

    def _entry(self, base_url: str, stored: StoredResource, mode: str, plan: SearchPlan) -> dict[str, Any]:
        body = None
        if plan.summary is not None or plan.elements:
            body = self.subsetter.subset(stored.body, stored.resource_type, plan.summary, plan.elements)
        return search_entry(base_url, stored, mode, body)


def _links(base_url: str, path: str, params: Sequence[tuple[str, str]], page_size: int, plan: SearchPlan,
           token: PageToken, hits: list[Hit], more: bool) -> list[tuple[str, str]]:
    """Absolute ``self``, ``first``, ``next`` and ``previous`` links, each with the effective
    ``_count``; all but ``self`` carry a page token of this walk."""
    kept = [(n, v) for n, v in params if n not in ("_count", CURSOR)]
    kept.append(("_count", str(page_size)))

    def at(page: PageToken | None) -> str:
        return page_url(base_url, path, [*kept, *([(CURSOR, page.encode())] if page else [])])

    requested = next((v for n, v in params if n == CURSOR), None)
    links = [("self", page_url(base_url, path, [*kept, *([(CURSOR, requested)] if requested else [])])),
             ("first", at(token))]
    if hits:
        forward = plan.before is None
        if more if forward else True:
            links.append(("next", at(PageToken(token.snapshot, token.sort, after=hits[-1].position,
                                               total=token.total))))
        if plan.after is not None if forward else more:
            links.append(("previous", at(PageToken(token.snapshot, token.sort, before=hits[0].position,
                                                   total=token.total))))
    return links
