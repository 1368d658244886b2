"""FHIR instance and type interactions: read, vread, create, update, patch, delete, and their
conditional forms (http.html). Nothing here knows HTTP or a database engine.

Every write runs as one function inside ``storage.run_in_transaction``: the precondition checks
(``If-Match``, conditional criteria) and the write see the same isolated state, so concurrent
requests cannot both pass a check that only one of them should.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consent.policy import AccessPolicy
from fhir_server.errors import FhirError, bad_request, not_found, precondition_failed
from fhir_server.resources.validation import validate_resource
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.plan import AnyCriterion
from fhir_server.search.query import parse_conditional
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.patching import apply_patch
from fhir_server.service.stamping import check_id, dump, new_id, now_ms, stamp
from fhir_server.storage.base import ResourceWrite, Storage, StorageTransaction, StoredResource


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: StoredResource
    created: bool = False  # 201 rather than 200
    changed: bool = True  # False when a conditional create found the resource already there


class ResourceService:
    def __init__(self, storage: Storage, registry: SearchRegistry, extractor: IndexExtractor) -> None:
        self.storage = storage
        self.registry = registry
        self.extractor = extractor

    # --- reads -----------------------------------------------------------------------------------

    def read(self, policy: AccessPolicy, resource_type: str, id: str) -> StoredResource:
        policy.require_read(resource_type)
        stored = self.storage.read(resource_type, id)
        if stored is None:
            raise not_found(f"{resource_type}/{id} is not known")
        if stored.deleted:
            raise FhirError(410, "deleted", f"{resource_type}/{id} was deleted",
                            headers={"ETag": f'W/"{stored.version}"'})
        return stored

    def vread(self, policy: AccessPolicy, resource_type: str, id: str, version: str) -> StoredResource:
        policy.require_read(resource_type)
        if not version.isdigit():
            raise not_found(f"{resource_type}/{id} has no version {version!r}")
        stored = self.storage.read_version(resource_type, id, int(version))
        if stored is None:
            raise not_found(f"{resource_type}/{id} has no version {version}")
        if stored.deleted:
            raise FhirError(410, "deleted", f"version {version} of {resource_type}/{id} is a deletion")
        return stored

    # --- writes ----------------------------------------------------------------------------------

    def create(self, policy: AccessPolicy, resource_type: str, resource: dict[str, Any],
               if_none_exist: str | None = None) -> WriteResult:
        policy.require_write(resource_type)
        self._check_type(resource_type, resource)
        criteria = self._criteria(resource_type, if_none_exist) if if_none_exist is not None else None
        validate_resource(resource_type, {k: v for k, v in resource.items() if k != "id"})

        def work(tx: StorageTransaction) -> WriteResult:
            if criteria is not None:
                tx.claim(f"create:{resource_type}?{if_none_exist}")
                existing = self._single_match(tx, resource_type, criteria, "create")
                if existing is not None:
                    return WriteResult(existing, created=False, changed=False)
            return WriteResult(self._write(tx, resource_type, new_id(), 1, resource), created=True)

        return self.storage.run_in_transaction(work)

    def update(self, policy: AccessPolicy, resource_type: str, id: str, resource: dict[str, Any],
               if_match: str | None = None) -> WriteResult:
        policy.require_write(resource_type)
        check_id(id)
        self._check_type(resource_type, resource)
        if "id" not in resource:
            raise bad_request("the resource in an update must carry its id", expression=(f"{resource_type}.id",))
        if resource["id"] != id:
            raise bad_request(f"resource id {resource['id']!r} does not match the URL id {id!r}",
                              expression=(f"{resource_type}.id",))
        validate_resource(resource_type, resource)
        expected = _expected_version(if_match)
        return self.storage.run_in_transaction(
            lambda tx: self._update_in(tx, resource_type, id, resource, expected))

    def conditional_update(self, policy: AccessPolicy, resource_type: str, query: str, resource: dict[str, Any],
                           if_match: str | None = None) -> WriteResult:
        policy.require_write(resource_type)
        self._check_type(resource_type, resource)
        criteria = self._criteria(resource_type, query)
        validate_resource(resource_type, resource)
        expected = _expected_version(if_match)

        def work(tx: StorageTransaction) -> WriteResult:
            tx.claim(f"update:{resource_type}?{query}")
            match = self._single_match(tx, resource_type, criteria, "update")
            if match is None:
                id = check_id(resource["id"]) if "id" in resource else new_id()
            else:
                id = match.id
                if "id" in resource and resource["id"] != id:
                    raise bad_request(f"resource id {resource['id']!r} does not match the resource found "
                                      f"by the search ({id!r})", expression=(f"{resource_type}.id",))
            return self._update_in(tx, resource_type, id, resource, expected)

        return self.storage.run_in_transaction(work)

    def patch(self, policy: AccessPolicy, resource_type: str, id: str, content_type: str, patch: Any,
              if_match: str | None = None) -> WriteResult:
        policy.require_write(resource_type)
        expected = _expected_version(if_match)

        def work(tx: StorageTransaction) -> WriteResult:
            current = tx.read(resource_type, id)
            return self._patch_in(tx, resource_type, id, current, content_type, patch, expected)

        return self.storage.run_in_transaction(work)

    def conditional_patch(self, policy: AccessPolicy, resource_type: str, query: str, content_type: str,
                          patch: Any, if_match: str | None = None) -> WriteResult:
        policy.require_write(resource_type)
        criteria = self._criteria(resource_type, query)
        expected = _expected_version(if_match)

        def work(tx: StorageTransaction) -> WriteResult:
            match = self._single_match(tx, resource_type, criteria, "patch")
            if match is None:
                raise not_found(f"no {resource_type} matches {query!r}")
            return self._patch_in(tx, resource_type, match.id, match, content_type, patch, expected)

        return self.storage.run_in_transaction(work)

    def delete(self, policy: AccessPolicy, resource_type: str, id: str, if_match: str | None = None) -> WriteResult:
        policy.require_write(resource_type)
        expected = _expected_version(if_match)

        def work(tx: StorageTransaction) -> WriteResult:
            current = tx.read(resource_type, id)
            if current is None:
                raise not_found(f"{resource_type}/{id} is not known")
            return self._delete_in(tx, current, expected)

        return self.storage.run_in_transaction(work)

    def conditional_delete(self, policy: AccessPolicy, resource_type: str, query: str,
                           if_match: str | None = None) -> WriteResult:
        policy.require_write(resource_type)
        criteria = self._criteria(resource_type, query)
        expected = _expected_version(if_match)

        def work(tx: StorageTransaction) -> WriteResult:
            match = self._single_match(tx, resource_type, criteria, "delete")
            if match is None:
                raise not_found(f"no {resource_type} matches {query!r}")
            return self._delete_in(tx, match, expected)

        return self.storage.run_in_transaction(work)

    # --- helpers ---------------------------------------------------------------------------------

    def _check_type(self, resource_type: str, resource: dict[str, Any]) -> None:
        body_type = resource.get("resourceType")
        if body_type != resource_type:
            raise bad_request(f"the body is a {body_type or 'resource without resourceType'}, "
                              f"the URL names {resource_type}", expression=("resourceType",))

    def _criteria(self, resource_type: str, query: str) -> list[AnyCriterion]:
        return parse_conditional(resource_type, query, self.registry).criteria

    def _single_match(self, tx: StorageTransaction, resource_type: str, criteria: list[AnyCriterion],
                      interaction: str) -> StoredResource | None:
        matches = tx.find(resource_type, criteria, 2)
        if len(matches) > 1:
            raise precondition_failed(f"conditional {interaction}: more than one {resource_type} matches the "
                                      "criteria; make them more selective")
        return matches[0] if matches else None

    def _write(self, tx: StorageTransaction, resource_type: str, id: str, version: int,
               resource: dict[str, Any]) -> StoredResource:
        last_updated = now_ms()
        stamped = stamp(resource, id, version, last_updated)
        body = dump(stamped)
        tx.write(ResourceWrite(resource_type, id, version, last_updated, False, body,
                               self.extractor.extract(stamped)))
        return StoredResource(resource_type, id, version, last_updated, False, body)

    def _update_in(self, tx: StorageTransaction, resource_type: str, id: str, resource: dict[str, Any],
                   expected: int | None) -> WriteResult:
        current = tx.read(resource_type, id)
        _check_version(resource_type, id, current, expected)
        version = current.version + 1 if current else 1
        stored = self._write(tx, resource_type, id, version, resource)
        return WriteResult(stored, created=current is None or current.deleted)

    def _patch_in(self, tx: StorageTransaction, resource_type: str, id: str, current: StoredResource | None,
                  content_type: str, patch: Any, expected: int | None) -> WriteResult:
        if current is None:
            raise not_found(f"{resource_type}/{id} is not known")
        if current.deleted:
            raise FhirError(410, "deleted", f"{resource_type}/{id} was deleted")
        _check_version(resource_type, id, current, expected)
        patched = apply_patch(current.body, content_type, patch)
        if patched.get("resourceType") != resource_type or patched.get("id") != id:
            raise FhirError(422, "processing", "a patch may not change resourceType or id")
        validate_resource(resource_type, patched)
        return WriteResult(self._write(tx, resource_type, id, current.version + 1, patched))

    def _delete_in(self, tx: StorageTransaction, current: StoredResource, expected: int | None) -> WriteResult:
        if current.deleted:
            return WriteResult(current, changed=False)
        _check_version(current.resource_type, current.id, current, expected)
        last_updated = now_ms()
        tx.write(ResourceWrite(current.resource_type, current.id, current.version + 1, last_updated, True, b""))
        return WriteResult(StoredResource(current.resource_type, current.id, current.version + 1,
                                          last_updated, True, b""))


def _expected_version(if_match: str | None) -> int | None:
    """``If-Match: W/"3"`` (also ``"3"`` or ``3``) → 3."""
    if if_match is None:
        return None
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise bad_request(f"If-Match must be a version ETag such as W/\"3\", not {if_match!r}")
    return int(value)


def _check_version(resource_type: str, id: str, current: StoredResource | None, expected: int | None) -> None:
    if expected is None:
        return
    if current is None or current.deleted:
        raise precondition_failed(f"If-Match: {resource_type}/{id} has no current version")
    if current.version != expected:
        raise precondition_failed(f"If-Match: {resource_type}/{id} is at version {current.version}, "
                                  f"not {expected}")
