"""FHIR instance and type interactions: read, vread, create, update, patch, delete, and their
conditional forms (http.html). Nothing here knows HTTP or a database engine.

Every write runs as one function inside ``storage.run_in_transaction``: the precondition checks
(``If-Match``, conditional criteria) and the write see the same isolated state, so concurrent
requests cannot both pass a check that only one of them should.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from consent.policy import AccessPolicy, holder_label, holders_of, with_holders
from fhir_server.errors import FhirError, bad_request, not_found, precondition_failed
from fhir_server.resources.validation import validate_resource
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.plan import AnyCriterion
from fhir_server.search.query import parse_conditional
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.documents import check_document
from fhir_server.service.patching import apply_patch
from fhir_server.service.references import rewrite_json, rewrite_references
from fhir_server.service.stamping import check_id, dump, new_resource_id, now_ms, stamp, version_number
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

    def read(self, policy: AccessPolicy, resource_type: str, id: str,
             tx: StorageTransaction | None = None) -> StoredResource:
        """The current version; inside a transaction bundle, read through its ``tx``."""
        policy.require_read(resource_type)
        stored = (tx or self.storage).read(resource_type, id)
        if stored is None:
            raise not_found(f"{resource_type}/{id} is not known")
        if stored.deleted:
            raise FhirError(410, "deleted", f"{resource_type}/{id} was deleted",
                            headers={"ETag": f'W/"{stored.version}"'})
        shown = policy.require_visible(stored)
        policy.disclosed("read", f"{resource_type}/{id}", [stored])
        return shown

    def vread(self, policy: AccessPolicy, resource_type: str, id: str, version: str) -> StoredResource:
        policy.require_read(resource_type)
        number = version_number(version)
        stored = self.storage.read_version(resource_type, id, number) if number is not None else None
        if stored is None:
            raise not_found(f"{resource_type}/{id} has no version {version}")
        if stored.deleted:
            raise FhirError(410, "deleted", f"version {version} of {resource_type}/{id} is a deletion")
        shown = policy.require_visible(stored)
        policy.disclosed("vread", f"{resource_type}/{id}/_history/{version}", [stored])
        return shown

    # --- writes ----------------------------------------------------------------------------------
    # Each interaction is prepared (checks that need no stored data) and then run as ONE work inside
    # ``storage.run_in_transaction``; a transaction bundle runs many prepared writes in one work.

    def create(self, policy: AccessPolicy, resource_type: str, resource: dict[str, Any],
               if_none_exist: str | None = None) -> WriteResult:
        return self.storage.run_in_transaction(self.prepare_create(policy, resource_type, resource, if_none_exist).run)

    def update(self, policy: AccessPolicy, resource_type: str, id: str, resource: dict[str, Any],
               if_match: str | None = None, if_none_match: str | None = None) -> WriteResult:
        op = self.prepare_update(policy, resource_type, id, resource, if_match, if_none_match)
        return self.storage.run_in_transaction(op.run)

    def conditional_update(self, policy: AccessPolicy, resource_type: str, query: str, resource: dict[str, Any],
                           if_match: str | None = None) -> WriteResult:
        op = self.prepare_conditional_update(policy, resource_type, query, resource, if_match)
        return self.storage.run_in_transaction(op.run)

    def patch(self, policy: AccessPolicy, resource_type: str, id: str, content_type: str, patch: Any,
              if_match: str | None = None) -> WriteResult:
        op = self.prepare_patch(policy, resource_type, id, content_type, patch, if_match)
        return self.storage.run_in_transaction(op.run)

    def conditional_patch(self, policy: AccessPolicy, resource_type: str, query: str, content_type: str,
                          patch: Any, if_match: str | None = None) -> WriteResult:
        op = self.prepare_conditional_patch(policy, resource_type, query, content_type, patch, if_match)
        return self.storage.run_in_transaction(op.run)

    def delete(self, policy: AccessPolicy, resource_type: str, id: str, if_match: str | None = None) -> WriteResult:
        return self.storage.run_in_transaction(self.prepare_delete(policy, resource_type, id, if_match).run)

    def conditional_delete(self, policy: AccessPolicy, resource_type: str, query: str,
                           if_match: str | None = None) -> WriteResult:
        op = self.prepare_conditional_delete(policy, resource_type, query, if_match)
        return self.storage.run_in_transaction(op.run)

    # --- prepared writes -----------------------------------------------------------------------

    def prepare_create(self, policy: AccessPolicy, resource_type: str, resource: dict[str, Any],
                       if_none_exist: str | None = None) -> WriteOp:
        policy.require_write(resource_type)
        self._check_type(resource_type, resource)
        criteria = self._criteria(policy, resource_type, if_none_exist) if if_none_exist is not None else None
        resource = {k: v for k, v in resource.items() if k != "id"}
        raw = self.validate(resource_type, resource)
        return _Create(self, policy, resource_type, resource, raw, criteria, if_none_exist)

    def prepare_update(self, policy: AccessPolicy, resource_type: str, id: str, resource: dict[str, Any],
                       if_match: str | None = None, if_none_match: str | None = None) -> WriteOp:
        policy.require_write(resource_type)
        check_id(id)
        self._check_type(resource_type, resource)
        if "id" not in resource:
            raise bad_request("the resource in an update must carry its id", expression=(f"{resource_type}.id",))
        if resource["id"] != id:
            raise bad_request(f"resource id {resource['id']!r} does not match the URL id {id!r}",
                              expression=(f"{resource_type}.id",))
        raw = self.validate(resource_type, resource)
        return _Update(self, policy, resource_type, id, resource, raw, _expected_version(if_match),
                       _unwanted_version(if_none_match))

    def prepare_conditional_update(self, policy: AccessPolicy, resource_type: str, query: str,
                                   resource: dict[str, Any], if_match: str | None = None) -> WriteOp:
        policy.require_write(resource_type)
        self._check_type(resource_type, resource)
        criteria = self._criteria(policy, resource_type, query)
        raw = self.validate(resource_type, resource)
        return _ConditionalUpdate(self, policy, resource_type, query, criteria, resource, raw,
                                  _expected_version(if_match))

    def prepare_patch(self, policy: AccessPolicy, resource_type: str, id: str, content_type: str, patch: Any,
                      if_match: str | None = None) -> WriteOp:
        policy.require_write(resource_type)
        return _Patch(self, policy, resource_type, id, None, content_type, patch, _expected_version(if_match))

    def prepare_conditional_patch(self, policy: AccessPolicy, resource_type: str, query: str, content_type: str,
                                  patch: Any, if_match: str | None = None) -> WriteOp:
        policy.require_write(resource_type)
        criteria = self._criteria(policy, resource_type, query)
        return _Patch(self, policy, resource_type, None, (query, criteria), content_type, patch,
                      _expected_version(if_match))

    def prepare_delete(self, policy: AccessPolicy, resource_type: str, id: str,
                       if_match: str | None = None) -> WriteOp:
        policy.require_write(resource_type)
        return _Delete(self, policy, resource_type, id, None, _expected_version(if_match))

    def prepare_conditional_delete(self, policy: AccessPolicy, resource_type: str, query: str,
                                   if_match: str | None = None) -> WriteOp:
        policy.require_write(resource_type)
        criteria = self._criteria(policy, resource_type, query)
        return _Delete(self, policy, resource_type, None, (query, criteria), _expected_version(if_match))

    # --- helpers ---------------------------------------------------------------------------------

    def validate(self, resource_type: str, resource: dict[str, Any]) -> bytes:
        """Everything a stored resource must satisfy: the R4B model, and for a document Bundle the
        document rules (400 / 422 naming what fails). Returns the JSON text that was judged."""
        self.storage.yield_to_writes()
        raw = validate_resource(resource_type, resource)
        if resource_type == "Bundle" and resource.get("type") == "document":
            check_document(resource)
        return raw

    def _check_type(self, resource_type: str, resource: dict[str, Any]) -> None:
        body_type = resource.get("resourceType")
        if body_type != resource_type:
            raise bad_request(f"the body is a {body_type or 'resource without resourceType'}, "
                              f"the URL names {resource_type}", expression=("resourceType",))

    def _criteria(self, policy: AccessPolicy, resource_type: str, query: str) -> list[AnyCriterion]:
        """A conditional interaction's criteria; they find only what the caller may see."""
        return policy.restrict_criteria(resource_type, parse_conditional(resource_type, query, self.registry).criteria)

    def _single_match(self, tx: StorageTransaction, resource_type: str, criteria: list[AnyCriterion],
                      interaction: str) -> StoredResource | None:
        matches = tx.find(resource_type, criteria, 2)
        if len(matches) > 1:
            raise precondition_failed(f"conditional {interaction}: more than one {resource_type} matches the "
                                      "criteria; make them more selective")
        return matches[0] if matches else None

    def _write(self, tx: StorageTransaction, resource_type: str, id: str, version: int,
               resource: dict[str, Any], holders: list[dict[str, Any]]) -> StoredResource:
        change = self._version(resource_type, id, version, resource, holders)
        tx.write(change)
        return _stored(change)

    def _version(self, resource_type: str, id: str, version: int, resource: dict[str, Any],
                 holders: list[dict[str, Any]]) -> ResourceWrite:
        """The new version as stored: stamped (id, meta, the record holders), serialized, its index
        values extracted."""
        self.storage.yield_to_writes()
        last_updated = now_ms()
        stamped = stamp(with_holders(resource, holders), id, version, last_updated)
        return ResourceWrite(resource_type, id, version, last_updated, False, dump(stamped),
                             self.extractor.extract(stamped))

    def _update_in(self, tx: StorageTransaction, policy: AccessPolicy, resource_type: str, id: str,
                   resource: dict[str, Any], expected: int | None, unwanted: int | None = None) -> WriteResult:
        current = tx.read(resource_type, id)
        policy.require_changeable(current)
        _check_version(resource_type, id, current, expected)
        _check_not_version(resource_type, id, current, unwanted)
        version = current.version + 1 if current else 1
        stored = self._write(tx, resource_type, id, version, resource, _holders(policy, current))
        return WriteResult(stored, created=current is None or current.deleted)

    def _patch_in(self, tx: StorageTransaction, policy: AccessPolicy, resource_type: str, id: str,
                  current: StoredResource | None, content_type: str, patch: Any, expected: int | None,
                  references: Mapping[str, str]) -> WriteResult:
        if current is None:
            raise not_found(f"{resource_type}/{id} is not known")
        if current.deleted:
            raise FhirError(410, "deleted", f"{resource_type}/{id} was deleted")
        policy.require_changeable(current)
        _check_version(resource_type, id, current, expected)
        patched = apply_patch(current.body, content_type, patch)
        if patched.get("resourceType") != resource_type or patched.get("id") != id:
            raise FhirError(422, "processing", "a patch may not change resourceType or id")
        if references:
            patched = rewrite_references(patched, references)
        self.validate(resource_type, patched)
        return WriteResult(self._write(tx, resource_type, id, current.version + 1, patched,
                                       _holders(policy, current)))

    def _delete_in(self, tx: StorageTransaction, policy: AccessPolicy, current: StoredResource,
                   expected: int | None) -> WriteResult:
        if current.deleted:
            return WriteResult(current, changed=False)
        policy.require_changeable(current)
        _check_version(current.resource_type, current.id, current, expected)
        last_updated = now_ms()
        tx.write(ResourceWrite(current.resource_type, current.id, current.version + 1, last_updated, True, b""))
        return WriteResult(StoredResource(current.resource_type, current.id, current.version + 1,
                                          last_updated, True, b""))


class WriteOp:
    """One write interaction, prepared: building it checked everything that needs no stored data
    (types, ids, the body, search criteria). Inside a storage transaction, ``resolve`` finds what it
    writes (the single match of its criteria, the id a create assigns; ``target_id`` after it) and
    ``execute`` writes, first replacing the references ``references`` maps (a transaction bundle's
    ``urn:uuid:`` fullUrls). A single interaction ``run``s both as one work; a transaction resolves
    every entry before executing any. Both steps may run again when a backend retries the work, so
    ``resolve`` sets all state afresh. ``raw`` is the validated body as JSON text (creates and
    updates), whose references are rewritten without walking the parsed resource."""

    method = ""
    raw: bytes | None = None

    def __init__(self, service: ResourceService, policy: AccessPolicy, resource_type: str, id: str | None) -> None:
        self.service = service
        self.policy = policy
        self.resource_type = resource_type
        self.target_id = id

    def _body(self, resource: dict[str, Any], references: Mapping[str, str]) -> dict[str, Any]:
        if not references or self.raw is None:
            return resource
        rewritten = rewrite_json(self.raw, references)
        return resource if rewritten is self.raw else orjson.loads(rewritten)

    def resolve(self, tx: StorageTransaction) -> None:
        """Nothing to find for an interaction on a known id."""

    def planned_id(self) -> str | None:
        """The id this write will have when that needs nothing from the store (an update's URL id, a
        plain create's new id, chosen now); None when only ``resolve`` can tell."""
        return self.target_id

    def finish(self, references: Mapping[str, str]) -> bool:
        """Build the stored version before the storage transaction, when nothing in it depends on the
        store (a plain create): the transaction then only writes it. False when it cannot."""
        return False

    def execute(self, tx: StorageTransaction, references: Mapping[str, str]) -> WriteResult:
        raise NotImplementedError

    def run(self, tx: StorageTransaction) -> WriteResult:
        self.resolve(tx)
        return self.execute(tx, {})


class _Create(WriteOp):
    method = "POST"

    def __init__(self, service: ResourceService, policy: AccessPolicy, resource_type: str, resource: dict[str, Any],
                 raw: bytes, criteria: list[AnyCriterion] | None, condition: str | None) -> None:
        super().__init__(service, policy, resource_type, None)
        self.resource = resource
        self.raw = raw
        self.criteria = criteria
        self.condition = condition
        self.existing: StoredResource | None = None
        self.ready: ResourceWrite | None = None

    def planned_id(self) -> str | None:
        if self.criteria is not None:
            return None
        if self.target_id is None:
            self.target_id = new_resource_id()
        return self.target_id

    def finish(self, references: Mapping[str, str]) -> bool:
        target_id = self.planned_id()
        if target_id is None:
            return False
        self.ready = self.service._version(self.resource_type, target_id, 1, self._body(self.resource, references),
                                           _holders(self.policy, None))
        return True

    def resolve(self, tx: StorageTransaction) -> None:
        if self.criteria is None:
            self.planned_id()  # a plain create keeps its id, also when the backend runs the work again
            return
        self.existing = None
        if self.criteria is not None:
            tx.claim(f"create:{self.resource_type}?{self.condition}")
            self.existing = self.service._single_match(tx, self.resource_type, self.criteria, "create")
        self.target_id = self.existing.id if self.existing is not None else new_resource_id()

    def execute(self, tx: StorageTransaction, references: Mapping[str, str]) -> WriteResult:
        if self.ready is not None:
            tx.write(self.ready)
            return WriteResult(_stored(self.ready), created=True)
        if self.existing is not None:
            return WriteResult(self.existing, created=False, changed=False)
        assert self.target_id is not None
        resource = self._body(self.resource, references)
        return WriteResult(self.service._write(tx, self.resource_type, self.target_id, 1, resource,
                                               _holders(self.policy, None)), created=True)


class _Update(WriteOp):
    method = "PUT"

    def __init__(self, service: ResourceService, policy: AccessPolicy, resource_type: str, id: str,
                 resource: dict[str, Any], raw: bytes, expected: int | None, unwanted: int | None) -> None:
        super().__init__(service, policy, resource_type, id)
        self.resource = resource
        self.raw = raw
        self.expected = expected
        self.unwanted = unwanted

    def execute(self, tx: StorageTransaction, references: Mapping[str, str]) -> WriteResult:
        assert self.target_id is not None
        resource = self._body(self.resource, references)
        return self.service._update_in(tx, self.policy, self.resource_type, self.target_id, resource,
                                       self.expected, self.unwanted)


class _ConditionalUpdate(_Update):
    def __init__(self, service: ResourceService, policy: AccessPolicy, resource_type: str, query: str,
                 criteria: list[AnyCriterion], resource: dict[str, Any], raw: bytes, expected: int | None) -> None:
        super().__init__(service, policy, resource_type, "", resource, raw, expected, None)
        self.target_id = None
        self.query = query
        self.criteria = criteria

    def resolve(self, tx: StorageTransaction) -> None:
        tx.claim(f"update:{self.resource_type}?{self.query}")
        match = self.service._single_match(tx, self.resource_type, self.criteria, "update")
        if match is None:
            self.target_id = check_id(self.resource["id"]) if "id" in self.resource else new_resource_id()
            return
        if "id" in self.resource and self.resource["id"] != match.id:
            raise bad_request(f"resource id {self.resource['id']!r} does not match the resource found "
                              f"by the search ({match.id!r})", expression=(f"{self.resource_type}.id",))
        self.target_id = match.id


class _Patch(WriteOp):
    method = "PATCH"

    def __init__(self, service: ResourceService, policy: AccessPolicy, resource_type: str, id: str | None,
                 condition: tuple[str, list[AnyCriterion]] | None, content_type: str, patch: Any,
                 expected: int | None) -> None:
        super().__init__(service, policy, resource_type, id)
        self.condition = condition
        self.content_type = content_type
        self.patch = patch
        self.expected = expected

    def resolve(self, tx: StorageTransaction) -> None:
        if self.condition is None:
            return
        query, criteria = self.condition
        match = self.service._single_match(tx, self.resource_type, criteria, "patch")
        if match is None:
            raise not_found(f"no {self.resource_type} matches {query!r}")
        self.target_id = match.id

    def execute(self, tx: StorageTransaction, references: Mapping[str, str]) -> WriteResult:
        assert self.target_id is not None
        current = tx.read(self.resource_type, self.target_id)
        return self.service._patch_in(tx, self.policy, self.resource_type, self.target_id, current,
                                      self.content_type, self.patch, self.expected, references)


class _Delete(WriteOp):
    method = "DELETE"

    def __init__(self, service: ResourceService, policy: AccessPolicy, resource_type: str, id: str | None,
                 condition: tuple[str, list[AnyCriterion]] | None, expected: int | None) -> None:
        super().__init__(service, policy, resource_type, id)
        self.condition = condition
        self.expected = expected

    def resolve(self, tx: StorageTransaction) -> None:
        if self.condition is None:
            return
        query, criteria = self.condition
        match = self.service._single_match(tx, self.resource_type, criteria, "delete")
        if match is None:
            raise not_found(f"no {self.resource_type} matches {query!r}")
        self.target_id = match.id

    def execute(self, tx: StorageTransaction, references: Mapping[str, str]) -> WriteResult:
        assert self.target_id is not None
        current = tx.read(self.resource_type, self.target_id)
        if current is None:
            raise not_found(f"{self.resource_type}/{self.target_id} is not known")
        return self.service._delete_in(tx, self.policy, current, self.expected)


def _holders(policy: AccessPolicy, current: StoredResource | None) -> list[dict[str, Any]]:
    """The record-holder labels of a new version: the current version's (a client can neither set nor
    drop them), and the writer's facility."""
    holders = [] if current is None or current.deleted else holders_of(orjson.loads(current.body))
    if policy.holder is not None:
        label = holder_label(policy.holder)
        if not any(h.get("code") == label["code"] for h in holders):
            holders.append(label)
    return holders


def _stored(change: ResourceWrite) -> StoredResource:
    return StoredResource(change.resource_type, change.id, change.version, change.last_updated, change.deleted,
                          change.body)


def _expected_version(if_match: str | None) -> int | None:
    """``If-Match: W/"3"`` (also ``"3"`` or ``3``) → 3."""
    if if_match is None:
        return None
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    number = version_number(value.strip('"'))
    if number is None:
        raise bad_request(f"If-Match must be a version ETag such as W/\"3\", not {if_match!r}")
    return number


def _unwanted_version(if_none_match: str | None) -> int | None:
    """``If-None-Match`` on an update: ``*`` (write only if the resource does not exist yet, -1 here) or
    a version ETag that must not be the current one."""
    if if_none_match is None:
        return None
    value = if_none_match.strip()
    if value == "*":
        return -1
    try:
        return _expected_version(value)
    except FhirError:
        raise bad_request(f"If-None-Match must be * or a version ETag such as W/\"3\", not {if_none_match!r}") from None


def _check_not_version(resource_type: str, id: str, current: StoredResource | None, unwanted: int | None) -> None:
    if unwanted is None or current is None or current.deleted:
        return
    if unwanted == -1 or current.version == unwanted:
        raise precondition_failed(f"If-None-Match: {resource_type}/{id} exists at version {current.version}")


def _check_version(resource_type: str, id: str, current: StoredResource | None, expected: int | None) -> None:
    if expected is None:
        return
    if current is None or current.deleted:
        raise precondition_failed(f"If-Match: {resource_type}/{id} has no current version")
    if current.version != expected:
        raise precondition_failed(f"If-Match: {resource_type}/{id} is at version {current.version}, "
                                  f"not {expected}")
