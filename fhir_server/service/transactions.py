"""Batch and transaction bundles (http.html#transaction).

A **transaction** runs every entry inside ONE ``storage.run_in_transaction`` work, so it is stored
whole or not at all and concurrent transactions serialize like single writes do (SQLite: one writer;
MongoDB: write conflicts and conditional-create claims make the backend re-run the work). Inside the
work the entries run in the spec's order: DELETE; then POST and PUT/PATCH targets are resolved
(conditional criteria, server-assigned ids), references to the bundle's ``fullUrl``\\ s (``urn:uuid:``,
``urn:oid:`` or absolute) and conditional references (``Patient?identifier=sys|1``, resolved against
the store as it stands after the deletes) are rewritten to ``Type/id`` at any depth; then POST, then
PUT/PATCH are written, then reads. Searches, history and version reads (GET) run just after the
commit, against a state that includes the transaction's writes. The first failing entry fails the
whole transaction with its own status and an OperationOutcome naming the entry.

Everything that needs no stored data happens before the work: entries are checked and validated,
and plain creates (new id, no conditional reference, no reference to an entry whose id only the
work can tell) are built completely, so the store's write lock is held for little more than the
writes themselves. All writes of the work go to the store together (``storage.buffer``).

A **batch** runs each entry as its own work; every outcome, success or OperationOutcome, is
reported in the ``batch-response``, in request order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from consent.policy import AccessPolicy
from fhir_server.errors import FhirError, Issue, bad_request, not_found, operation_outcome, precondition_failed
from fhir_server.search.plan import AnyCriterion
from fhir_server.search.query import parse_conditional, parse_search
from fhir_server.service.bundles import bundle, etag, not_modified, resource_url
from fhir_server.service.history import HistoryService
from fhir_server.service.patching import JSON_PATCH
from fhir_server.service.references import references_in
from fhir_server.service.resources import ResourceService, WriteOp, WriteResult
from fhir_server.service.search import SearchService
from fhir_server.service.stamping import format_instant
from fhir_server.storage.base import StorageTransaction, StoredResource
from fhir_server.storage.buffer import BufferedTransaction

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_WRITE_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2}
_MERGE_PATCH = "application/merge-patch+json"


@dataclass(slots=True)
class _Url:
    """``request.url`` of an entry, relative to this server's base."""

    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    history: bool = False
    query: str = ""

    @property
    def params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)


@dataclass(slots=True)
class _Entry:
    index: int
    full_url: str | None
    method: str
    url: str
    target: _Url
    request: Mapping[str, Any]
    resource: dict[str, Any] | None
    op: WriteOp | None = None
    references: dict[str, list[AnyCriterion]] = field(default_factory=dict)  # conditional references
    cited: frozenset[str] = frozenset()  # every reference in the resource

    def label(self) -> str:
        where = f"Bundle.entry[{self.index}]"
        return where + (f" (fullUrl {self.full_url})" if self.full_url else "") + f" {self.method} {self.url}"


@dataclass(slots=True)
class _Outcome:
    """What one entry produced, before it becomes ``entry.response``."""

    status: int
    stored: StoredResource | None = None  # the version written or read
    body: Any = None  # a Bundle (search, history) or an OperationOutcome instead of a stored resource
    location: bool = False


class BundleService:
    def __init__(self, resources: ResourceService, search: SearchService, history: HistoryService,
                 resource_types: frozenset[str]) -> None:
        self.resources = resources
        self.search = search
        self.history = history
        self.resource_types = resource_types

    def process(self, policy: AccessPolicy, base_url: str, body: Any, prefer_return: str = "representation",
                ) -> dict[str, Any]:
        """The ``transaction-response`` or ``batch-response`` for a posted Bundle; a FhirError (with the
        failing entry's status) when a transaction fails or the Bundle cannot be processed at all."""
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            kind = body.get("resourceType") if isinstance(body, dict) else None
            raise bad_request(f"POST to the base takes a Bundle of type transaction or batch, not "
                              f"{kind or 'a body without resourceType'}", expression=("resourceType",))
        kind = body.get("type")
        if kind not in ("transaction", "batch"):
            raise bad_request(f"POST to the base takes a Bundle of type transaction or batch, not {kind!r}"
                              + ("; store a document with POST /Bundle" if kind == "document" else ""),
                              expression=("Bundle.type",))
        entries = body.get("entry", [])
        if not isinstance(entries, list):
            raise bad_request("Bundle.entry must be an array", code="structure", expression=("Bundle.entry",))
        if kind == "batch":
            return self._batch(policy, base_url, entries, prefer_return)
        return self._transaction(policy, base_url, entries, prefer_return)

    # --- transaction -----------------------------------------------------------------------------

    def _transaction(self, policy: AccessPolicy, base_url: str, raw_entries: list[Any],
                     prefer_return: str) -> dict[str, Any]:
        entries = [self._entry(i, raw, base_url) for i, raw in enumerate(raw_entries)]
        for entry in entries:
            with _naming(entry):
                self._prepare(policy, entry, transaction=True)
        writes = sorted((e for e in entries if e.op is not None), key=lambda e: _WRITE_ORDER[e.method])
        reads = [e for e in entries if e.op is None and e.target.id is not None and e.target.version is None
                 and not e.target.history]
        _finish_early(writes)

        def work(store: StorageTransaction) -> dict[int, _Outcome]:
            tx = BufferedTransaction(store)
            outcomes: dict[int, _Outcome] = {}
            deletes = [e for e in writes if e.method == "DELETE"]
            others = [e for e in writes if e.method != "DELETE"]
            claimed: dict[tuple[str, str], _Entry] = {}
            for entry in deletes:
                with _naming(entry):
                    assert entry.op is not None
                    entry.op.resolve(tx)
                    _claim_identity(claimed, entry)
                    outcomes[entry.index] = _written(entry.op.execute(tx, {}))
            replacements: dict[str, str] = {}
            for entry in others:
                with _naming(entry):
                    assert entry.op is not None
                    entry.op.resolve(tx)
                    _claim_identity(claimed, entry)
                    if entry.full_url and entry.method in ("POST", "PUT"):
                        replacements[entry.full_url] = f"{entry.op.resource_type}/{entry.op.target_id}"
            for entry in others:
                for reference, criteria in entry.references.items():
                    if reference not in replacements:
                        with _naming(entry):
                            replacements[reference] = _resolve_reference(tx, reference, criteria)
            for entry in others:
                with _naming(entry):
                    assert entry.op is not None
                    outcomes[entry.index] = _written(entry.op.execute(tx, replacements))
            tx.flush()
            for entry in reads:
                with _naming(entry):
                    outcomes[entry.index] = self._read(policy, entry, tx)
            return outcomes

        outcomes = self.resources.storage.run_in_transaction(work) if writes or reads else {}
        results = []
        for entry in entries:
            if entry.index in outcomes:
                results.append(_response_entry(base_url, outcomes[entry.index], prefer_return))
            else:
                results.append(self._after_commit(policy, base_url, entry, prefer_return))
        return bundle("transaction-response", results, [])

    def _after_commit(self, policy: AccessPolicy, base_url: str, entry: _Entry, prefer_return: str,
                      ) -> dict[str, Any]:
        """A search, history or version read runs once the writes are committed; it changes nothing,
        so a failure (a version that is a deletion, say) is reported in its own entry."""
        try:
            return _response_entry(base_url, self._get(policy, base_url, entry), prefer_return)
        except FhirError as error:
            return {"response": {"status": _status(error.status), "outcome": _named(error, entry).outcome()}}

    # --- batch -----------------------------------------------------------------------------------

    def _batch(self, policy: AccessPolicy, base_url: str, raw_entries: list[Any], prefer_return: str,
               ) -> dict[str, Any]:
        results = []
        for index, raw in enumerate(raw_entries):
            try:
                entry = self._entry(index, raw, base_url)
                self._prepare(policy, entry, transaction=False)
                if entry.op is not None:
                    outcome = _written(self.resources.storage.run_in_transaction(entry.op.run))
                else:
                    outcome = self._get(policy, base_url, entry)
                results.append(_response_entry(base_url, outcome, prefer_return))
            except FhirError as error:
                results.append({"response": {"status": _status(error.status), "outcome": error.outcome()}})
        return bundle("batch-response", results, [])

    # --- entries ---------------------------------------------------------------------------------

    def _entry(self, index: int, raw: Any, base_url: str) -> _Entry:
        where = f"Bundle.entry[{index}]"
        if not isinstance(raw, dict):
            raise bad_request(f"{where} must be an object", code="structure", expression=(where,))
        request = raw.get("request")
        if not isinstance(request, dict):
            raise bad_request(f"{where} has no request: every entry of a transaction or batch says what to do "
                              "(request.method and request.url)", code="required", expression=(f"{where}.request",))
        method, url = request.get("method"), request.get("url")
        if method not in _METHODS:
            raise bad_request(f"{where}: request.method must be one of {', '.join(_METHODS)}, not {method!r}",
                              expression=(f"{where}.request.method",))
        if not isinstance(url, str) or not url.strip():
            raise bad_request(f"{where}: request.url is missing", code="required", expression=(f"{where}.request.url",))
        full_url = raw.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            raise bad_request(f"{where}: fullUrl must be a string", expression=(f"{where}.fullUrl",))
        resource = raw.get("resource")
        if resource is not None and not isinstance(resource, dict):
            raise bad_request(f"{where}: resource must be a JSON object", code="structure",
                              expression=(f"{where}.resource",))
        entry = _Entry(index, full_url, method, url, _Url(), request, resource)
        with _naming(entry):
            entry.target = self._parse_url(url, base_url)
        return entry

    def _parse_url(self, url: str, base_url: str) -> _Url:
        path, _, query = url.strip().partition("?")
        if "://" in path:
            if not path.startswith(base_url + "/") and path != base_url:
                raise bad_request(f"request.url {url!r} is not on this server ({base_url})")
            path = path[len(base_url):]
        path = path.lstrip("/")
        segments = [s for s in path.split("/") if s]
        target = _Url(query=query)
        if any(s.startswith("$") for s in segments) or segments[:1] == ["metadata"]:
            raise FhirError(400, "not-supported", f"request.url {url!r}: operations are not supported inside a bundle")
        if segments[:1] == ["_history"] and len(segments) == 1:
            target.history = True
            return target
        if not segments:
            return target
        target.resource_type = segments[0]
        if target.resource_type not in self.resource_types:
            raise not_found(f"unknown resource type {target.resource_type!r}")
        rest = segments[1:]
        if rest == ["_history"]:
            target.history = True
        elif len(rest) == 1:
            target.id = rest[0]
        elif len(rest) == 2 and rest[1] == "_history":
            target.id, target.history = rest[0], True
        elif len(rest) == 3 and rest[1] == "_history":
            target.id, target.version = rest[0], rest[2]
        elif rest:
            raise bad_request(f"request.url {url!r} is not a FHIR interaction URL")
        return target

    def _prepare(self, policy: AccessPolicy, entry: _Entry, *, transaction: bool) -> None:
        """Check the entry and build its WriteOp; nothing is read or written yet."""
        method, target, request = entry.method, entry.target, entry.request
        if method in ("GET", "HEAD"):
            self._check_get(entry)
            return
        resource_type = target.resource_type
        if resource_type is None or target.history or target.version is not None:
            raise bad_request(f"{method} needs a URL of the form Type, Type/id or Type?criteria")
        if_match = _text(request, "ifMatch")
        if method == "POST":
            if target.id is not None:
                raise bad_request("POST creates on a type URL (Type), not on Type/id")
            resource = _resource(entry)
            condition = _text(request, "ifNoneExist")
            if condition is not None:
                condition = condition.split("?", 1)[1] if condition.startswith(f"{resource_type}?") else condition
            elif target.query:
                condition = target.query
            entry.op = self.resources.prepare_create(policy, resource_type, resource, condition)
        elif method == "PUT":
            resource = _resource(entry)
            if target.id is not None:
                entry.op = self.resources.prepare_update(policy, resource_type, target.id, resource, if_match,
                                                         _text(request, "ifNoneMatch"))
            else:
                query = _condition(target, "PUT")
                entry.op = self.resources.prepare_conditional_update(policy, resource_type, query, resource, if_match)
        elif method == "PATCH":
            content_type, patch = _patch_body(entry)
            if target.id is not None:
                entry.op = self.resources.prepare_patch(policy, resource_type, target.id, content_type, patch,
                                                        if_match)
            else:
                entry.op = self.resources.prepare_conditional_patch(policy, resource_type, _condition(target, "PATCH"),
                                                                    content_type, patch, if_match)
        elif target.id is not None:
            entry.op = self.resources.prepare_delete(policy, resource_type, target.id, if_match)
        else:
            entry.op = self.resources.prepare_conditional_delete(policy, resource_type, _condition(target, "DELETE"),
                                                                 if_match)
        if transaction and entry.op.raw is not None:
            entry.cited = frozenset(references_in(entry.op.raw))
            entry.references = {reference: self._reference_criteria(policy, reference)
                                for reference in entry.cited if _conditional(reference)}

    def _reference_criteria(self, policy: AccessPolicy, reference: str) -> list[AnyCriterion]:
        """A conditional reference's criteria; like a search, they find only what the caller may see."""
        resource_type, _, query = reference.partition("?")
        if resource_type not in self.resource_types:
            raise bad_request(f"conditional reference {reference!r}: unknown resource type {resource_type!r}")
        policy.require_read(resource_type)
        criteria = parse_conditional(resource_type, query, self.resources.registry).criteria
        return policy.restrict_criteria(resource_type, criteria)

    def _check_get(self, entry: _Entry) -> None:
        """Reject a bad search or history query before anything is written."""
        target = entry.target
        if target.id is None and not target.history:
            parse_search(target.resource_type, target.params, self.resources.registry, strict=False,
                         default_count=self.search.default_count, max_count=self.search.max_count)

    # --- reads -----------------------------------------------------------------------------------

    def _read(self, policy: AccessPolicy, entry: _Entry, tx: StorageTransaction | None) -> _Outcome:
        target = entry.target
        assert target.resource_type is not None and target.id is not None
        stored = self.resources.read(policy, target.resource_type, target.id, tx)
        if not_modified(stored, _text(entry.request, "ifNoneMatch"), _text(entry.request, "ifModifiedSince")):
            return _Outcome(304, stored)
        return _Outcome(200, stored)

    def _get(self, policy: AccessPolicy, base_url: str, entry: _Entry) -> _Outcome:
        target = entry.target
        if target.history:
            result = self.history.history(policy, base_url, target.resource_type, target.id, target.params)
            return _Outcome(200, body=result)
        if target.version is not None:
            assert target.resource_type is not None and target.id is not None
            return _Outcome(200, self.resources.vread(policy, target.resource_type, target.id, target.version))
        if target.id is not None:
            return self._read(policy, entry, None)
        result = self.search.search(policy, base_url, target.resource_type, target.params, strict=False)
        return _Outcome(200, body=result)


# --- helpers ---------------------------------------------------------------------------------------

@contextmanager
def _naming(entry: _Entry) -> Iterator[None]:
    """Re-raise a FhirError from one entry's processing with the entry named in every issue."""
    try:
        yield
    except FhirError as error:
        raise _named(error, entry) from None


def _named(error: FhirError, entry: _Entry) -> FhirError:
    where = f"Bundle.entry[{entry.index}]"
    resource_type = entry.target.resource_type
    issues = []
    for issue in error.issues:
        expression = [where]
        for path in issue.expression:
            if resource_type and (path == resource_type or path.startswith(resource_type + ".")):
                expression.append(f"{where}.resource{path[len(resource_type):]}")
            elif not path.startswith("Bundle."):
                expression.append(path)
        issues.append(Issue(issue.severity, issue.code, f"{entry.label()}: {issue.diagnostics}",
                            tuple(dict.fromkeys(expression))))
    return FhirError(error.status, issues[0].code if issues else "processing", str(error), issues=issues,
                     headers=error.headers)


def _finish_early(writes: list[_Entry]) -> None:
    """Build, before the storage transaction, every create that needs nothing from the store: its id
    is new, and it cites no conditional reference and no fullUrl whose id only the transaction can
    tell (a conditional create's or update's). Its transaction then only writes it, so the store's
    write lock is held for the writes alone."""
    known: dict[str, str] = {}
    pending: set[str] = set()
    for entry in writes:
        assert entry.op is not None
        planned = entry.op.planned_id() if entry.method in ("POST", "PUT") else None
        if entry.full_url and entry.method in ("POST", "PUT"):
            if planned is None:
                pending.add(entry.full_url)
            else:
                known[entry.full_url] = f"{entry.op.resource_type}/{planned}"
    for entry in writes:
        if entry.method == "POST" and not entry.references and pending.isdisjoint(entry.cited):
            assert entry.op is not None
            entry.op.finish(known)


def _claim_identity(claimed: dict[tuple[str, str], _Entry], entry: _Entry) -> None:
    """http.html#trules: a transaction may not touch one resource through two entries."""
    assert entry.op is not None and entry.op.target_id is not None
    key = (entry.op.resource_type, entry.op.target_id)
    if key in claimed:
        raise bad_request(f"{key[0]}/{key[1]} is also the target of Bundle.entry[{claimed[key].index}]; "
                          "a transaction may touch each resource only once")
    claimed[key] = entry


def _resolve_reference(tx: StorageTransaction, reference: str, criteria: list[AnyCriterion]) -> str:
    resource_type = reference.split("?", 1)[0]
    matches = tx.find(resource_type, criteria, 2)
    if not matches:
        raise not_found(f"conditional reference {reference!r} matches no {resource_type}")
    if len(matches) > 1:
        raise precondition_failed(f"conditional reference {reference!r} matches more than one {resource_type}")
    return f"{resource_type}/{matches[0].id}"


def _conditional(reference: str) -> bool:
    """``Patient?identifier=...``: a type, a question mark, criteria."""
    head, mark, _ = reference.partition("?")
    return bool(mark) and head.isalpha() and head[:1].isupper()


def _text(request: Mapping[str, Any], name: str) -> str | None:
    value = request.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"request.{name} must be a string")
    return value


def _resource(entry: _Entry) -> dict[str, Any]:
    if entry.resource is None:
        raise bad_request(f"{entry.method} needs the resource in entry.resource", code="required")
    return entry.resource


def _condition(target: _Url, method: str) -> str:
    if not target.query:
        raise bad_request(f"{method} on a type URL needs search criteria (conditional {method.lower()})")
    return urlencode(target.params)


def _patch_body(entry: _Entry) -> tuple[str, Any]:
    """A PATCH entry carries its patch as a Binary (``contentType`` JSON Patch or merge patch, ``data``
    base64), the form http.html#transaction gives for JSON Patch."""
    resource = entry.resource
    if resource is None or resource.get("resourceType") != "Binary":
        raise FhirError(400, "not-supported", "a PATCH entry carries a Binary holding a JSON Patch "
                                              "(contentType application/json-patch+json) or a merge patch")
    content_type = str(resource.get("contentType", "")).split(";", 1)[0].strip().lower()
    if content_type not in (JSON_PATCH, _MERGE_PATCH, "application/json", "application/fhir+json"):
        raise FhirError(400, "not-supported", f"PATCH Binary contentType {content_type!r} is not supported; use "
                                              f"{JSON_PATCH} or {_MERGE_PATCH}")
    try:
        patch = orjson.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise bad_request("the PATCH Binary's data is not base64-encoded JSON") from None
    return (JSON_PATCH if content_type == JSON_PATCH else _MERGE_PATCH), patch


def _written(result: WriteResult) -> _Outcome:
    stored = result.stored
    if stored.deleted:
        return _Outcome(204, stored)
    return _Outcome(201 if result.created else 200, stored, location=True)


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _response_entry(base_url: str, outcome: _Outcome, prefer_return: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    response: dict[str, Any] = {"status": _status(outcome.status)}
    stored = outcome.stored
    if stored is not None:
        if not stored.deleted:
            entry["fullUrl"] = resource_url(base_url, stored)
            if outcome.status != 304 and prefer_return == "representation":
                entry["resource"] = orjson.Fragment(stored.body)
        if outcome.location:
            response["location"] = f"{stored.resource_type}/{stored.id}/_history/{stored.version}"
        response["etag"] = etag(stored)
        response["lastModified"] = format_instant(stored.last_updated)
        if prefer_return == "OperationOutcome" and outcome.location:
            response["outcome"] = operation_outcome([Issue(
                "information", "informational",
                f"{stored.resource_type}/{stored.id} version {stored.version}: {_status(outcome.status)}")])
    elif outcome.body is not None:
        entry["resource"] = outcome.body
    entry["response"] = response
    return entry

