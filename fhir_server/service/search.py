"""Type and system search: query → SearchPlan → storage → searchset Bundle with absolute links."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from consent.policy import AccessPolicy
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.search.plan import SearchPlan
from fhir_server.search.query import parse_search
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.bundles import bundle, page_url, search_entry
from fhir_server.storage.base import Storage, StoredResource

_PAGING = ("_offset",)
_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
              "display": "Resource encoded in summary mode"}
_ALWAYS_KEPT = ("resourceType", "id", "meta")


def _subset(stored: StoredResource, elements: Sequence[str]) -> bytes:
    """``_elements``: the named top-level elements plus the mandatory ones, tagged SUBSETTED."""
    resource = orjson.loads(stored.body)
    kept = {k: v for k, v in resource.items() if k in _ALWAYS_KEPT or k in elements}
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), _SUBSETTED]
    kept["meta"] = meta
    return orjson.dumps(kept)


class SearchService:
    def __init__(self, storage: Storage, registry: SearchRegistry, default_count: int, max_count: int) -> None:
        self.storage = storage
        self.registry = registry
        self.default_count = default_count
        self.max_count = max_count

    def search(self, policy: AccessPolicy, base_url: str, resource_type: str | None,
               params: Sequence[tuple[str, str]], *, strict: bool) -> dict[str, Any]:
        plan = parse_search(resource_type, list(params), self.registry, strict=strict,
                            default_count=self.default_count, max_count=self.max_count)
        for t in plan.resource_types:
            policy.require_read(t)
        if plan.summary not in (None, "false", "count"):
            raise FhirError(400, "not-supported", f"_summary={plan.summary} is not supported yet; "
                                                  "use _elements or _summary=count")
        if plan.summary == "count":
            plan.count = 0
        page = self.storage.search(plan)
        path = resource_type or ""
        entries = [self._entry(base_url, s, "match", plan) for s in page.matches]
        entries += [self._entry(base_url, s, "include", plan) for s in page.includes
                    if policy.can_read(s.resource_type)]
        if plan.ignored:
            outcome = operation_outcome(
                [Issue("warning", "not-supported", f"unknown search parameter {name!r} was ignored")
                 for name in plan.ignored])
            entries.append({"resource": outcome, "search": {"mode": "outcome"}})
        return bundle("searchset", entries, self._links(base_url, path, params, plan, page.total,
                                                        len(page.matches)), page.total)

    def _entry(self, base_url: str, stored: StoredResource, mode: str, plan: SearchPlan) -> dict[str, Any]:
        body = _subset(stored, plan.elements) if plan.elements else None
        return search_entry(base_url, stored, mode, body)

    def _links(self, base_url: str, path: str, params: Sequence[tuple[str, str]], plan: SearchPlan,
               total: int | None, returned: int) -> list[tuple[str, str]]:
        kept = [(n, v) for n, v in params if n not in _PAGING]

        def at(offset: int) -> str:
            return page_url(base_url, path, [*kept, *([("_offset", str(offset))] if offset else [])])

        links = [("self", at(plan.offset)), ("first", at(0))]
        if plan.count > 0:
            more = plan.offset + returned < total if total is not None else returned == plan.count
            if more:
                links.append(("next", at(plan.offset + plan.count)))
            if plan.offset > 0:
                links.append(("previous", at(max(0, plan.offset - plan.count))))
        return links
