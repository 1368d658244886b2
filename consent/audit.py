"""The audit trail of patient-data disclosures: FHIR AuditEvents a patient can read.

Each request by staff or a system that hands out patient data gets one ``RequestAudit`` (the
AccessPolicy's observer). When the request ends it becomes one AuditEvent: who asked (agent, with
their facility), what interaction, when, and an entity for every patient whose data was shown that
lists the resources shown of them. Events are stored as ordinary ``AuditEvent`` resources in the FHIR
store, so a patient reads them like the rest of their compartment (``GET /AuditEvent``), seeing of
each event only what concerns them (``patient_view``; the access policy also keeps patients' searches
of AuditEvents off the parameters that look at other entities). No role may write, change or delete
an AuditEvent through the API, which makes the trail append-only.

Writing happens off the request path: ``AuditTrail`` queues events and a background thread stores
whatever is queued in one storage transaction every ``interval`` seconds (and on ``flush`` and
``close``), so an audited read costs a queue append, not a commit.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from consent.policy import patients_referenced
from consent.tokens import Principal
from fhir_server.search.index_values import DateValue, IndexValue, ReferenceValue, TokenValue
from fhir_server.search.normalize import date_range, normalize_text
from fhir_server.settings import Settings
from fhir_server.service.stamping import dump, format_instant, new_id, now_ms, stamp
from fhir_server.storage.base import ResourceWrite, Storage, StoredResource

log = logging.getLogger("fhir_server.audit")

EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
              "display": "RESTful Operation"}
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/object-role"
AGENT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
CLIENT_SYSTEM = "urn:fhir-server:client"
ACCOUNT_SYSTEM = "urn:fhir-server:account"
MAX_NAMED = 100  # resources named per event (every patient is named)
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
        self._trail.submit([_event(self._principal, self._method, self._path, list(self._interactions),
                                   {p: list(refs) for p, refs in self._by_patient.items()}, now_ms())])
        self._by_patient = {}


class AuditTrail:
    """Queues events and stores them in batches, from a thread of this process (``thread``: tests and
    embedded use) or from a writer process of its own (``process``: the server). In the server, the
    writer's CPU work (serializing, index values, the store's inserts) would otherwise compete with
    request handling for the interpreter lock and stall reads behind it."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self._writer: _ThreadWriter | _ProcessWriter = (
            _ProcessWriter(settings) if settings.audit_writer == "process"
            else _ThreadWriter(storage, settings.audit_flush_seconds))

    def request(self, principal: Principal, method: str, path: str) -> RequestAudit:
        return RequestAudit(self, principal, method, path)

    def submit(self, events: list[dict[str, Any]]) -> None:
        self._writer.submit(events)

    def flush(self) -> int:
        """Stores every event submitted so far, now; returns how many this call stored."""
        return self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def store_events(storage: Storage, events: list[dict[str, Any]]) -> None:
    """One storage transaction for a batch of events (new AuditEvents, version 1)."""
    writes = []
    for event in events:
        last_updated = now_ms()
        stamped = stamp(event, new_id(), 1, last_updated)
        writes.append(ResourceWrite("AuditEvent", stamped["id"], 1, last_updated, False, dump(stamped),
                                    index_values(stamped)))

    def work(tx: Any) -> None:
        tx.write_many(writes)

    storage.run_in_transaction(work)


class _ThreadWriter:
    def __init__(self, storage: Storage, interval: float) -> None:
        self._storage = storage
        self._interval = interval
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # one writer at a time: the thread, flush() or close()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._queue.put(event)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()

    def flush(self) -> int:
        with self._lock:
            events = []
            while True:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if events:
                store_events(self._storage, events)
            return len(events)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # the trail must outlive one failed write
                log.exception("storing audit events failed")


_FLUSH, _STOP = "flush", "stop"
MAX_PENDING_BATCHES = 2000
"""Requests' event batches the writer process may lag behind by. Beyond that, ``submit`` waits: reads
of patient data never outrun the trail that records them, and the backlog cannot grow without bound."""


class _ProcessWriter:
    """Sends batches of events to a writer process (started on the first one), which opens the store
    itself and writes every ``audit_flush_seconds``; ``flush`` waits for its acknowledgement."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._queue: Any = None
        self._acks: Any = None
        self._sent = 0

    def submit(self, events: list[dict[str, Any]]) -> None:
        with self._lock:
            if self._process is None:
                self._start()
            self._queue.put(events)
            self._sent += len(events)

    def flush(self) -> int:
        with self._lock:
            if self._process is None:
                return 0
            self._queue.put(_FLUSH)
            stored = self._acks.get(timeout=60)
            return int(stored)

    def close(self) -> None:
        with self._lock:
            if self._process is None:
                return
            self._queue.put(_STOP)
            self._process.join(timeout=60)
            if self._process.is_alive():
                log.error("the audit writer did not stop within 60 s")
                self._process.terminate()
            self._process = None
            for channel in (self._queue, self._acks):
                channel.close()
                channel.join_thread()

    def _start(self) -> None:
        self._queue = self._context.Queue(maxsize=MAX_PENDING_BATCHES)
        self._acks = self._context.Queue()
        self._process = self._context.Process(target=_writer_process, name="audit-writer", daemon=True,
                                              args=(self._settings, self._queue, self._acks))
        self._process.start()


def _writer_process(settings: Settings, inbox: Any, acks: Any) -> None:
    """The writer process: batches what arrives, stores it every ``audit_flush_seconds`` (sooner once
    it holds ``audit_batch_events``), and at once on a flush request (answered with how many events
    it stored since the last one) or stop."""
    from fhir_server.storage.factory import open_storage

    storage = open_storage(settings)
    pending: list[dict[str, Any]] = []
    stored_since_ack = 0
    deadline = time.monotonic() + settings.audit_flush_seconds
    try:
        while True:
            try:
                message = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                message = None
            if isinstance(message, list):
                pending += message
                if time.monotonic() < deadline and len(pending) < settings.audit_batch_events:
                    continue
            if pending:
                try:
                    store_events(storage, pending)
                    stored_since_ack += len(pending)
                except Exception:
                    log.exception("storing audit events failed")
                pending = []
            deadline = time.monotonic() + settings.audit_flush_seconds
            if message == _FLUSH:
                acks.put(stored_since_ack)
                stored_since_ack = 0
            elif message == _STOP:
                return
    finally:
        storage.close()


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
    roles: dict[tuple[str, str], TokenValue] = {}
    types: dict[tuple[str, str], TokenValue] = {}
    patients = []
    for entity in event["entity"]:
        kind, _, id = entity["what"]["reference"].partition("/")
        values.append(ReferenceValue("entity", kind, id))
        if kind == "Patient":
            patients.append(ReferenceValue("patient", kind, id))
        for key, found in (("role", roles), ("type", types)):
            coding = entity.get(key)
            if coding and (coding["system"], coding["code"]) not in found:  # a few codings, many entities
                found[coding["system"], coding["code"]] = TokenValue(
                    f"entity-{key}", coding["system"], coding["code"], normalize_text(coding["display"]))
    values += roles.values()
    values += types.values()
    values.append(TokenValue("outcome", None, event["outcome"]))
    values += patients
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


DISCLOSED_DETAIL = "disclosed"
"""``entity.detail.type`` of a resource the request showed (``valueString``: ``Type/id``), listed
under the entity of the patient it is about."""


def _event(principal: Principal, method: str, path: str, interactions: list[str],
           by_patient: dict[str, list[str]], recorded: datetime) -> dict[str, Any]:
    """One event for one request: an entity for every patient whose data it disclosed, each listing
    the resources shown of that patient (up to ``MAX_NAMED`` in the event) as details.

    The resources are details rather than entities of their own because an entity's ``what`` is a
    search index value: one per resource shown meant one random index insert per resource, and the
    trail of a few minutes of searches outgrew the records it was about."""
    entities: list[dict[str, Any]] = []
    room = MAX_NAMED
    for patient_id, references in by_patient.items():
        patient = f"Patient/{patient_id}"
        shown = [reference for reference in references if reference != patient][:room]
        room -= len(shown)
        entity: dict[str, Any] = {
            "what": {"reference": patient},
            "type": {"system": ENTITY_TYPE_SYSTEM, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE_SYSTEM, "code": "1", "display": "Patient"}}
        if shown:
            entity["detail"] = [{"type": DISCLOSED_DETAIL, "valueString": reference} for reference in shown]
        entities.append(entity)
    first = interactions[0] if interactions else "read"
    return {
        "resourceType": "AuditEvent",
        "type": EVENT_TYPE,
        "subtype": [{"system": INTERACTION_SYSTEM, "code": _SUBTYPES.get(i, "read")} for i in interactions],
        "action": _ACTIONS.get(first, "R"),
        "recorded": format_instant(recorded),
        "outcome": "0",
        "outcomeDesc": f"{method} {path}",
        "agent": _agent(principal),
        "source": {"observer": {"display": "fhir-server"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                             "display": "Application Server"}]},
        "entity": entities,
    }


def patient_view(body: bytes, patient_id: str) -> bytes:
    """An event as one of its patients sees it: only the entities about them (an event of a search
    names every patient on the page; none of them learns about the others)."""
    event = orjson.loads(body)
    own = f"Patient/{patient_id}"
    event["entity"] = [e for e in event.get("entity", []) if (e.get("what") or {}).get("reference") == own]
    return orjson.dumps(event)
