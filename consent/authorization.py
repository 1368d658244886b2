"""Who may do what on the FHIR API: a verified token becomes the request's AccessPolicy.

- no token, or one that fails verification: 401 with ``WWW-Authenticate: Bearer``;
- a patient reads their own compartment (and the non-patient resources: organizations,
  practitioners, ...) and writes nothing;
- practitioners, facility administrators and facility systems (SMART backend clients registered for
  a facility) create and change records, which the server labels with their facility as record
  holder, and read patient data their facility holds; every such read is audited;
- everyone else (an administrator, staff without a facility) is refused patient data with 403 until
  the patient consents (the consent issue), and may read and write the rest within their scopes.

SMART scopes narrow all of this by resource type and action.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

import orjson

from consent.audit import AuditTrail, RequestAudit, patient_view
from consent.clock import Clock
from consent.identity import Identity
from consent.policy import PATIENT_DATA_CONTAINERS, AccessPolicy, CompartmentRule, HolderRule
from consent.tokens import InvalidTokenError, Principal
from fhir_server.errors import FhirError
from fhir_server.search.compartments import membership
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.index_values import ReferenceValue
from fhir_server.search.registry import SearchRegistry
from fhir_server.storage.base import StoredResource

AUDIT_SEARCH_PARAMS = frozenset({"_id", "_lastUpdated", "date", "subtype", "type", "action", "outcome", "agent",
                                  "agent-name", "agent-role", "altid", "source", "site", "address", "policy"})
"""What a patient may search their AuditEvents by: nothing that looks at an event's entities, which
name the other patients a request disclosed."""
READ_ONLY = frozenset({"AuditEvent"})  # the audit trail is append-only: the server writes it, nobody else
CACHE_SIZE = 4096  # verified tokens remembered (until they expire), so a client's next call skips the signature check
REALM = "fhir-server"


def challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a 401 (RFC 6750 section 3)."""
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    if description:
        value += ', error_description="{}"'.format(description.replace('"', "'"))
    return {"WWW-Authenticate": value}


class Authorization:
    def __init__(self, identity: Identity, registry: SearchRegistry, extractor: IndexExtractor,
                 audit: AuditTrail, clock: Clock) -> None:
        self._identity = identity
        self._extractor = extractor
        self._clock = clock
        self.audit = audit
        self.members = membership("Patient", registry)
        self.guarded = frozenset({*self.members, "Patient", *PATIENT_DATA_CONTAINERS})
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._lock = threading.Lock()

    def principal(self, authorization: str | None) -> Principal:
        """The caller behind ``Authorization: Bearer ...``; FhirError 401 otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if not authorization:
            raise FhirError(401, "login", "this server needs a bearer token (Authorization: Bearer ...)",
                            headers=challenge())
        if scheme.lower() != "bearer" or not token:
            raise FhirError(401, "login", "only bearer tokens are accepted",
                            headers=challenge("invalid_request", "only bearer tokens are accepted"))
        cached = self._cached(token)
        if cached is not None:
            return cached
        try:
            principal = self._identity.verify_access_token(token)
        except InvalidTokenError as error:
            raise FhirError(401, "login", f"the bearer token is not valid: {error}",
                            headers=challenge("invalid_token", str(error))) from None
        with self._lock:
            self._cache[token] = principal
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal

    def policy(self, principal: Principal, audit: RequestAudit | None = None) -> AccessPolicy:
        may = principal.allows
        if principal.role == "patient":
            if principal.patient_id is None:
                return AccessPolicy(may=may, guarded=self.guarded, writes_guarded=False, read_only=READ_ONLY,
                                    refusal="this account is not linked to a patient record")
            rows = CompartmentRule(principal.patient_id, self.members, self._references, patient_view,
                                   AUDIT_SEARCH_PARAMS)
            return AccessPolicy(may=may, guarded=self.guarded, rows=rows, writes_guarded=False, read_only=READ_ONLY)
        if principal.role in ("practitioner", "facility-admin", "system") and principal.facility_id:
            return AccessPolicy(may=may, guarded=self.guarded, rows=HolderRule(principal.facility_id),
                                holder=principal.facility_id, read_only=READ_ONLY, observer=audit)
        return AccessPolicy(may=may, guarded=self.guarded, writes_guarded=False, read_only=READ_ONLY)

    def request_audit(self, principal: Principal, method: str, path: str) -> RequestAudit | None:
        """The collector of what this request discloses; None for a patient reading their own data."""
        if principal.role == "patient":
            return None
        return self.audit.request(principal, method, path)

    def _cached(self, token: str) -> Principal | None:
        with self._lock:
            principal = self._cache.get(token)
            if principal is None:
                return None
            self._cache.move_to_end(token)
        expires: datetime | None = principal.expires_at
        if expires is not None and expires <= self._clock():
            with self._lock:
                self._cache.pop(token, None)
            return None
        return principal

    def _references(self, stored: StoredResource, params: tuple[str, ...]) -> Iterable[tuple[str | None, str | None]]:
        for value in self._extractor.extract(orjson.loads(stored.body)):
            if isinstance(value, ReferenceValue) and value.param in params:
                yield value.target_type, value.target_id
