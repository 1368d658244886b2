"""``Patient/[id]/$everything`` (patient-operation-everything.html): the patient, every resource in
the patient's compartment (membership from the official CompartmentDefinition, see
``search.compartments``), and the Practitioner, Organization, Medication and Location resources those
reference.

Parameters: ``_since`` (only resources last updated at or after it), ``_type`` (only these types),
``_count`` (page size) and ``_offset`` (the position the ``next``/``previous`` links carry). The
record is collected whole and then paged in a fixed order: the patient, the compartment's resources
by type and id, then the referenced resources by type and id. A patient's record is small enough
for that (it is capped at ``max_resources``); a record written to between two pages may shift.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from consent.policy import AccessPolicy
from fhir_server.errors import FhirError, bad_request
from fhir_server.search.compartments import membership
from fhir_server.search.normalize import date_range
from fhir_server.search.plan import CompartmentCriterion, SearchPlan
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.bundles import bundle, page_url, search_entry
from fhir_server.service.resources import ResourceService
from fhir_server.service.stamping import version_number
from fhir_server.storage.base import Storage, StoredResource

REFERENCED_TYPES = ("Practitioner", "Organization", "Medication", "Location")
_IGNORED = {"_format", "_pretty", "start", "end"}  # start/end (care dates) are optional in R4


class EverythingService:
    def __init__(self, storage: Storage, resources: ResourceService, registry: SearchRegistry, default_count: int,
                 max_count: int, max_resources: int = 50_000) -> None:
        self.storage = storage
        self.resources = resources
        self.registry = registry
        self.default_count = default_count
        self.max_count = max_count
        self.max_resources = max_resources

    def everything(self, policy: AccessPolicy, base_url: str, patient_id: str,
                   params: Sequence[tuple[str, str]]) -> dict[str, Any]:
        count, offset, since, types = self.default_count, 0, None, None
        for name, value in params:
            if name == "_count":
                count = min(_number(name, value), self.max_count)
            elif name == "_offset":
                offset = _number(name, value)
            elif name == "_since":
                if date_range(value) is None:
                    raise bad_request(f"_since: {value!r} is not a valid instant", expression=("_since",))
                since = value
            elif name == "_type":
                types = {t.strip() for t in value.split(",") if t.strip()}
                unknown = sorted(t for t in types if not self.registry.is_resource_type(t))
                if unknown:
                    raise bad_request(f"_type: unknown resource type(s) {', '.join(unknown)}", expression=("_type",))
            elif name not in _IGNORED:
                raise bad_request(f"unknown $everything parameter {name!r}: use _since, _type, _count or _offset")
        patient = self.resources.read(policy, "Patient", patient_id)
        record = self._record(policy, patient, since, types)
        page = record[offset:offset + count] if count else []
        kept = [(n, v) for n, v in params if n != "_offset"]
        path = f"Patient/{patient_id}/$everything"

        def at(position: int) -> str:
            return page_url(base_url, path, [*kept, *([("_offset", str(position))] if position else [])])

        links = [("self", at(offset)), ("first", at(0))]
        if count and offset + count < len(record):
            links.append(("next", at(offset + count)))
        if count and offset > 0:
            links.append(("previous", at(max(0, offset - count))))
        policy.disclosed("operation", path, page)
        entries = [search_entry(base_url, policy.shown(stored), "match") for stored in page]
        return bundle("searchset", entries, links, len(record))

    def _record(self, policy: AccessPolicy, patient: StoredResource, since: str | None,
                types: set[str] | None) -> list[StoredResource]:
        """The whole record in page order. ``_type`` filters what is returned; the referenced
        resources are found from every compartment type, so ``_type=Practitioner`` still returns the
        practitioners the patient's encounters name."""
        def wanted(resource_type: str) -> bool:
            return (types is None or resource_type in types) and policy.can_read(resource_type)

        follow = any(wanted(t) for t in REFERENCED_TYPES)
        members: dict[tuple[str, str], StoredResource] = {}
        for resource_type, codes in sorted(membership("Patient", self.registry).items()):
            if policy.can_read(resource_type) and (wanted(resource_type) or follow):
                for stored in self._members(resource_type, codes, patient.id):
                    members.setdefault((stored.resource_type, stored.id), stored)
        members.pop(("Patient", patient.id), None)
        members = {key: stored for key, stored in members.items() if policy.permits(stored)}
        targets = sorted({key for stored in [patient, *members.values()] for key in _references(stored.body)
                          if key[0] in REFERENCED_TYPES and wanted(key[0]) and key not in members})
        referenced = [stored for stored in (self.storage.read(t, i) for t, i in targets)
                      if stored is not None and not stored.deleted and policy.permits(stored)]
        ordered = [patient] + [members[k] for k in sorted(members)] + referenced
        return [s for s in ordered if wanted(s.resource_type) and _since_ok(s, since)]

    def _members(self, resource_type: str, codes: tuple[str, ...], patient_id: str) -> list[StoredResource]:
        plan = SearchPlan((resource_type,), [CompartmentCriterion(
            resource_type, tuple(f"{resource_type}.{c}" for c in codes), "Patient", patient_id)],
            count=self.max_resources, total="none")
        hits = self.storage.search(plan).hits
        if len(hits) > self.max_resources:
            raise FhirError(422, "too-costly", f"the patient has more than {self.max_resources} {resource_type} "
                                               "resources, more than $everything returns")
        return [hit.stored for hit in hits]


def _number(name: str, value: str) -> int:
    number = version_number(value)
    if number is None:
        raise bad_request(f"{name} must be a non-negative integer, not {value!r}", expression=(name,))
    return number


def _since_ok(stored: StoredResource, since: str | None) -> bool:
    if since is None:
        return True
    bounds = date_range(since)
    return bounds is not None and int(stored.last_updated.timestamp() * 1000) >= bounds[0]


def _references(body: bytes) -> Iterator[tuple[str, str]]:
    """``(type, id)`` of every relative literal reference in a stored resource."""
    stack: list[Any] = [orjson.loads(body)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    parts = value.split("/")
                    if len(parts) == 2 and parts[0] and parts[1]:
                        yield parts[0], parts[1]
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(item for item in node if isinstance(item, (dict, list)))
