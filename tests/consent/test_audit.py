"""The audit trail's AuditEvents: their hand-built index values equal the generic extractor's (so
searches over the trail find every event), and a patient's view of an event names only them."""

from __future__ import annotations

import orjson
import pytest

from consent.audit import DISCLOSED_DETAIL, MAX_NAMED, _event, index_values, patient_view
from consent.tokens import Principal
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.stamping import dump, now_ms, stamp

CALLERS = {
    "practitioner": Principal("acct-1", "practitioner", frozenset(), facility_id="fac-a", practitioner_id="pr-1"),
    "system": Principal("ehr", "system", frozenset(), facility_id="fac-b", client_id="ehr-client"),
    "system-without-facility": Principal("lab", "system", frozenset(), client_id="lab"),
    "account": Principal("acct-2", "facility-admin", frozenset(), facility_id="fac-c"),
}
SHAPES = {
    "one patient read": (["read"], {"p1": ["Patient/p1"]}),
    "a search page": (["search"], {"p1": ["Observation/o1", "Observation/o2"], "p2": ["Observation/o3"],
                                   "p3": ["Patient/p3", "Encounter/e1"]}),
    "more than the cap": (["read", "search", "history", "operation"],
                          {f"p{i}": [f"Observation/o{i}-{j}" for j in range(3)] for i in range(60)}),
}


@pytest.fixture(scope="module")
def extractor() -> IndexExtractor:
    return IndexExtractor(SearchRegistry.load())


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_hand_built_index_values_equal_the_extractors(extractor: IndexExtractor, caller: str, shape: str) -> None:
    interactions, by_patient = SHAPES[shape]
    event = _event(CALLERS[caller], "GET", "/Observation", interactions, by_patient, now_ms())
    stamped = stamp(event, "event-1", 1, now_ms())
    assert set(index_values(stamped)) == set(extractor.extract(stamped))
    assert [e["what"]["reference"] for e in event["entity"]] == [f"Patient/{p}" for p in by_patient]
    shown = [r for p in by_patient for r in by_patient[p] if r != f"Patient/{p}"]
    assert _shown(event) == shown[:MAX_NAMED]  # in order, up to the cap; every patient, whatever the cap


def test_a_patient_sees_only_their_part_of_an_event() -> None:
    interactions, by_patient = SHAPES["a search page"]
    event = stamp(_event(CALLERS["system"], "GET", "/Observation", interactions, by_patient, now_ms()), "e", 1,
                  now_ms())
    seen = orjson.loads(patient_view(dump(event), "p1"))
    assert [e["what"]["reference"] for e in seen["entity"]] == ["Patient/p1"]
    assert _shown(seen) == ["Observation/o1", "Observation/o2"]
    assert "p2" not in orjson.dumps(seen).decode() and "p3" not in orjson.dumps(seen).decode()
    assert seen["agent"] == event["agent"] and seen["recorded"] == event["recorded"]


def test_the_resources_shown_are_listed_under_their_patient_not_indexed_one_by_one(extractor: IndexExtractor) -> None:
    """A search page of 40 resources of one patient writes one entity and a handful of index
    values, not one per resource."""
    by_patient = {"p1": ["Patient/p1", *(f"Observation/o{i}" for i in range(40))]}
    event = stamp(_event(CALLERS["practitioner"], "GET", "/Observation", ["search"], by_patient, now_ms()), "e", 1,
                  now_ms())
    (entity,) = event["entity"]
    assert entity["what"] == {"reference": "Patient/p1"}
    assert [d["valueString"] for d in entity["detail"]] == by_patient["p1"][1:]
    values = index_values(event)
    assert len(values) < 20
    assert {v.param for v in values if v.param in ("entity", "patient")} == {"entity", "patient"}


def _shown(event: dict) -> list[str]:
    return [d["valueString"] for e in event["entity"] for d in e.get("detail", []) if d["type"] == DISCLOSED_DETAIL]
