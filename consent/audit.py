"""The audit trail of patient-data disclosures: FHIR AuditEvents a patient can read.

Each request by staff or a system that hands out patient data gets one ``RequestAudit`` (the
AccessPolicy's observer). When the request ends it becomes one AuditEvent per patient whose data
was shown: who asked (agent, with their facility), what interaction, which of that patient's
resources, and when. Events are stored as ordinary ``AuditEvent`` resources in the FHIR store, so the
patient reads them like the rest of their compartment (``GET /AuditEvent?patient=...``); no role may
write, change or delete an AuditEvent through the API, which makes the trail append-only.

Writing happens off the request path: ``AuditTrail`` queues events and a background thread stores
whatever is queued in one storage transaction every ``interval`` seconds (and on ``flush`` and
``close``), so an audited read costs a queue append, not a commit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from consent.policy import patients_referenced
from consent.tokens import Principal
from fhir_server.search.index_values import DateValue, IndexValue, ReferenceValue, TokenValue
from fhir_server.search.normalize import date_range, normalize_text
from fhir_server.service.resources import ResourceService
from fhir_server.service.stamping import dump, format_instant, new_id, now_ms, stamp
from fhir_server.storage.base import ResourceWrite, StoredResource

log = logging.getLogger("fhir_server.audit")

EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
              "display": "RESTful Operation"}
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/object-role"
AGENT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
CLIENT_SYSTEM = "urn:fhir-server:client"
ACCOUNT_SYSTEM = "urn:fhir-server:account"
MAX_ENTITIES = 100  # resources named per event; more are counted in the description
_ACTIONS = {"read": "R", "vread": "R", "search": "E", "history": "R", "operation": "E"}
_SUBTYPES = {"read": "read", "vread": "vread", "search": "search-type", "history": "history-instance",
             "operation": "operation"}


class RequestAudit:
    """Collects, for one request, the patient data it disclosed (the AccessPolicy's observer)."""

    def __init__(self, trail: AuditTrail, principal: Principal, method: str, path: str) -> None:
        self._trail = trail
        self._principal = principal
        self._method = method
        self._path = path
        self._interactions: dict[str, None] = {}
        self._by_patient: dict[str, dict[str, None]] = {}

    def disclosed(self, interaction: str, detail: str, resources: Sequence[StoredResource]) -> None:
        self._interactions.setdefault(interaction)
        for stored in resources:
            for patient_id in patients_referenced(stored):
                self._by_patient.setdefault(patient_id, {})[f"{stored.resource_type}/{stored.id}"] = None

    def finish(self) -> None:
        if not self._by_patient:
            return
        recorded = now_ms()
        interactions = list(self._interactions)
        self._trail.submit([_event(self._principal, self._method, self._path, interactions, patient_id,
                                   list(references), recorded)
                            for patient_id, references in self._by_patient.items()])
        self._by_patient = {}


class AuditTrail:
    def __init__(self, resources: ResourceService, interval: float = 0.2) -> None:
        self._resources = resources
        self._interval = interval
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # one writer at a time: the thread, flush() or close()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self, principal: Principal, method: str, path: str) -> RequestAudit:
        return RequestAudit(self, principal, method, path)

    def submit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._queue.put(event)
        if self._thread is None:
            self._start()

    def flush(self) -> int:
        """Stores every queued event now; returns how many."""
        with self._lock:
            events = []
            while True:
                try:
                    event = self._queue.get_nowait()
                except queue.Empty:
                    break
                if event is not None:
                    events.append(event)
            if events:
                self._store(events)
            return len(events)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # the trail must outlive one failed write; the events stay counted in the log
                log.exception("storing audit events failed")

    def _store(self, events: list[dict[str, Any]]) -> None:
        writes = []
        for event in events:
            last_updated = now_ms()
            stamped = stamp(event, new_id(), 1, last_updated)
            writes.append(ResourceWrite("AuditEvent", stamped["id"], 1, last_updated, False, dump(stamped),
                                        index_values(stamped)))

        def work(tx: Any) -> None:
            tx.write_many(writes)

        self._resources.storage.run_in_transaction(work)


def index_values(event: dict[str, Any]) -> list[IndexValue]:
    """The search index values of a stamped event this module built, straight from its known shape:
    the same values the generic extractor computes from the official AuditEvent search parameters
    (a test holds them equal), at a fraction of the cost, which matters since every audited read
    writes one."""
    values: list[IndexValue] = [TokenValue("_id", None, event["id"])]
    updated = date_range(event["meta"]["lastUpdated"])
    assert updated is not None
    values.append(DateValue("_lastUpdated", *updated))
    values.append(TokenValue("action", None, event["action"]))
    for agent in event["agent"]:
        who = agent["who"]
        if "identifier" in who:
            values.append(TokenValue("agent:identifier", who["identifier"]["system"], who["identifier"]["value"]))
        else:
            kind, _, id = who["reference"].partition("/")
            values.append(ReferenceValue("agent", kind, id))
    recorded = date_range(event["recorded"])
    assert recorded is not None
    values.append(DateValue("date", *recorded))
    roles, types, patient = [], [], None
    for entity in event["entity"]:
        kind, _, id = entity["what"]["reference"].partition("/")
        values.append(ReferenceValue("entity", kind, id))
        if kind == "Patient":
            patient = ReferenceValue("patient", kind, id)
        for key, found in (("role", roles), ("type", types)):
            coding = entity.get(key)
            if coding:
                found.append(TokenValue(f"entity-{key}", coding["system"], coding["code"],
                                        normalize_text(coding["display"])))
    values += roles
    values += types
    values.append(TokenValue("outcome", None, event["outcome"]))
    if patient is not None:
        values.append(patient)
    values += [TokenValue("subtype", c["system"], c["code"]) for c in event["subtype"]]
    values.append(TokenValue("type", event["type"]["system"], event["type"]["code"],
                             normalize_text(event["type"]["display"])))
    return list(dict.fromkeys(values))


def _agent(principal: Principal) -> list[dict[str, Any]]:
    who: dict[str, Any]
    if principal.practitioner_id:
        who = {"reference": f"Practitioner/{principal.practitioner_id}"}
    elif principal.role == "system":
        who = {"identifier": {"system": CLIENT_SYSTEM, "value": principal.client_id or principal.subject}}
    else:
        who = {"identifier": {"system": ACCOUNT_SYSTEM, "value": principal.subject}}
    agents: list[dict[str, Any]] = [{
        "type": {"coding": [{"system": AGENT_ROLE_SYSTEM, "code": "humanuser" if principal.role != "system"
                             else "dataprocessor"}], "text": principal.role},
        "who": who, "requestor": True,
    }]
    if principal.facility_id:
        agents.append({"who": {"reference": f"Organization/{principal.facility_id}"}, "requestor": False})
    return agents


def _event(principal: Principal, method: str, path: str, interactions: list[str], patient_id: str,
           references: list[str], recorded: datetime) -> dict[str, Any]:
    entities: list[dict[str, Any]] = [{
        "what": {"reference": f"Patient/{patient_id}"},
        "type": {"system": ENTITY_TYPE_SYSTEM, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE_SYSTEM, "code": "1", "display": "Patient"},
    }]
    shown = [r for r in references if r != f"Patient/{patient_id}"]
    for reference in shown[:MAX_ENTITIES]:
        entities.append({"what": {"reference": reference},
                         "type": {"system": ENTITY_TYPE_SYSTEM, "code": "2", "display": "System Object"},
                         "role": {"system": OBJECT_ROLE_SYSTEM, "code": "4", "display": "Domain Resource"}})
    first = interactions[0] if interactions else "read"
    description = f"{method} {path}"
    if len(shown) > MAX_ENTITIES:
        description += f" ({len(shown)} resources; the first {MAX_ENTITIES} are listed)"
    return {
        "resourceType": "AuditEvent",
        "type": EVENT_TYPE,
        "subtype": [{"system": INTERACTION_SYSTEM, "code": _SUBTYPES.get(i, "read")} for i in interactions],
        "action": _ACTIONS.get(first, "R"),
        "recorded": format_instant(recorded),
        "outcome": "0",
        "outcomeDesc": description,
        "agent": _agent(principal),
        "source": {"observer": {"display": "fhir-server"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                             "display": "Application Server"}]},
        "entity": entities,
    }
