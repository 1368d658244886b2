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

from collections.abc import Iterator
from typing import Any

from fhir_server.errors import FhirError, Issue

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
