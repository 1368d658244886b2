"""Document bundles (documents.html): the rules a stored document must satisfy, and ``$document``,
which assembles one from a stored Composition and everything it references.

A document is stored as a Bundle resource like any other; its rules are checked whenever a Bundle of
type ``document`` is written or validated. References inside a document are resolved within the
bundle as bundle.html#references describes: absolute references and ``urn:uuid:`` / ``urn:oid:``
against the entries' ``fullUrl``; a relative ``Type/id`` against the base of the entry's own RESTful
``fullUrl``. Variants seen in ABDM exchanges are accepted too: a relative reference equal to an
entry's (relative) ``fullUrl``, or naming the type and id of an entry's resource.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from consent.policy import AccessPolicy
from fhir_server.errors import FhirError, Issue
from fhir_server.service.stamping import format_instant, new_id, now_ms
from fhir_server.storage.base import StoredResource

if TYPE_CHECKING:
    from fhir_server.service.resources import ResourceService, WriteResult

_MAX_REPORTED = 20


def check_document(bundle: dict[str, Any]) -> None:
    """Raise a 422 FhirError naming every document rule ``bundle`` breaks (first entry a Composition,
    ``identifier`` and ``timestamp`` present, every entry a resource, fullUrls unique, every reference
    resolvable within the bundle)."""
    issues = list(_document_issues(bundle))
    if issues:
        raise FhirError(422, "invariant", "the document breaks the document rules", issues=issues[:_MAX_REPORTED])


def _document_issues(bundle: dict[str, Any]) -> Iterator[Issue]:
    identifier = bundle.get("identifier") or {}
    if not identifier.get("system") or not identifier.get("value"):
        yield _issue("required", "a document needs an identifier with a system and a value (bdl-9)",
                     "Bundle.identifier")
    if not bundle.get("timestamp"):
        yield _issue("required", "a document needs a timestamp (bdl-10)", "Bundle.timestamp")
    entries = bundle.get("entry") or []
    if not entries or not isinstance(entries[0].get("resource"), dict) or (
            entries[0]["resource"].get("resourceType") != "Composition"):
        yield _issue("invariant", "the first entry of a document must be a Composition", "Bundle.entry[0]")
    full_urls: dict[str, int] = {}
    identities: set[str] = set()
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            yield _issue("required", "every entry of a document carries a resource", f"Bundle.entry[{index}]")
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            if full_url in full_urls:
                yield _issue("invariant", f"fullUrl {full_url!r} is also the fullUrl of entry {full_urls[full_url]} "
                             "(bdl-7)", f"Bundle.entry[{index}].fullUrl")
            full_urls[full_url] = index
        if resource.get("id"):
            identities.add(f"{resource.get('resourceType')}/{resource['id']}")
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        for path, reference in _references(resource, f"Bundle.entry[{index}].resource"):
            if not _resolves(reference, full_url, full_urls, identities):
                yield _issue("not-found", f"reference {reference!r} does not resolve to an entry of the document",
                             path)


def _issue(code: str, diagnostics: str, expression: str) -> Issue:
    return Issue("error", code, diagnostics, (expression,))


def _references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every literal ``reference`` at any depth (contained resources and extensions included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield f"{path}.reference", value
            elif isinstance(value, (dict, list)):
                yield from _references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _references(item, f"{path}[{i}]")


def _resolves(reference: str, full_url: str | None, full_urls: dict[str, int], identities: set[str]) -> bool:
    if reference.startswith("#"):
        return True  # a contained resource, resolved within the resource itself
    versionless = _without_history(reference)
    if reference in full_urls or versionless in full_urls:
        return True
    if "://" in reference or reference.startswith("urn:"):
        return False
    if versionless in identities:
        return True
    if full_url and "://" in full_url:
        segments = full_url.rstrip("/").split("/")
        if len(segments) >= 2:
            return "/".join(segments[:-2]) + "/" + versionless in full_urls
    return False


def _without_history(reference: str) -> str:
    head, marker, _ = reference.partition("/_history/")
    return head if marker else reference


class DocumentService:
    """``Composition/[id]/$document`` (composition-operation-document.html): a document Bundle holding
    the Composition and, transitively, every resource it references (local ``Type/id`` references;
    contained and external ones are left as they are). Entries carry ``fullUrl`` ``{base}/Type/id``,
    so the resources' relative references resolve within the bundle. ``persist`` stores the document
    as a Bundle resource (through the ordinary create, document rules included)."""

    def __init__(self, resources: ResourceService, max_resources: int = 10_000) -> None:
        self.resources = resources
        self.max_resources = max_resources

    def document(self, policy: AccessPolicy, base_url: str, composition_id: str,
                 persist: bool) -> tuple[dict[str, Any], WriteResult | None]:
        composition = self.resources.read(policy, "Composition", composition_id)
        included: dict[tuple[str, str], dict[str, Any]] = {}
        pending = deque([composition])
        queued = {("Composition", composition_id)}
        while pending:
            stored = pending.popleft()
            resource = orjson.loads(stored.body)
            included[(stored.resource_type, stored.id)] = resource
            for reference in _local_references(resource, base_url):
                if reference in queued:
                    continue
                if len(queued) >= self.max_resources:
                    raise FhirError(422, "too-costly", f"the document would hold more than {self.max_resources} "
                                                       "resources")
                queued.add(reference)
                pending.append(self._referenced(policy, stored, reference))
        now = format_instant(now_ms())
        document: dict[str, Any] = {
            "resourceType": "Bundle",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{new_id()}"},
            "type": "document",
            "timestamp": now,
            "entry": [{"fullUrl": f"{base_url}/{t}/{i}", "resource": r} for (t, i), r in included.items()],
        }
        if persist:
            result = self.resources.create(policy, "Bundle", document)
            return orjson.loads(result.stored.body), result
        return {"resourceType": "Bundle", "id": new_id(), "meta": {"lastUpdated": now}, **document}, None

    def _referenced(self, policy: AccessPolicy, source: StoredResource, reference: tuple[str, str]) -> StoredResource:
        resource_type, id = reference
        try:
            return self.resources.read(policy, resource_type, id)
        except FhirError as error:
            if error.status in (404, 410):
                state = "was deleted" if error.status == 410 else "is not stored"
                raise FhirError(422, "processing", f"cannot assemble the document: {source.resource_type}/"
                                                   f"{source.id} refers to {resource_type}/{id}, which {state}") from None
            raise


def _local_references(resource: dict[str, Any], base_url: str) -> list[tuple[str, str]]:
    """``(type, id)`` of the references to resources on this server, in document order."""
    found: list[tuple[str, str]] = []
    for _, reference in _references(resource, ""):
        if reference.startswith(base_url + "/"):
            reference = reference[len(base_url) + 1:]
        parts = _without_history(reference).split("/")
        if len(parts) == 2 and parts[0][:1].isupper() and parts[1] and "?" not in reference:
            found.append((parts[0], parts[1]))
    return list(dict.fromkeys(found))
