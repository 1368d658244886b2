"""The audit trail's AuditEvents: their hand-built index values equal the generic extractor's, so
the patient's searches over their audit trail find every event."""

from __future__ import annotations

import pytest

from consent.audit import MAX_ENTITIES, _event, index_values
from consent.tokens import Principal
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.stamping import now_ms, stamp

CALLERS = {
    "practitioner": Principal("acct-1", "practitioner", frozenset(), facility_id="fac-a", practitioner_id="pr-1"),
    "system": Principal("ehr", "system", frozenset(), facility_id="fac-b", client_id="ehr-client"),
    "system-without-facility": Principal("lab", "system", frozenset(), client_id="lab"),
    "account": Principal("acct-2", "facility-admin", frozenset(), facility_id="fac-c"),
}


@pytest.fixture(scope="module")
def extractor() -> IndexExtractor:
    return IndexExtractor(SearchRegistry.load())


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize(("interactions", "references"), [
    (["read"], ["Patient/p1"]),
    (["search"], ["Patient/p1", "Observation/o1", "Observation/o2", "Encounter/e1"]),
    (["read", "search", "history", "operation"], [f"Observation/o{i}" for i in range(MAX_ENTITIES + 5)]),
])
def test_hand_built_index_values_equal_the_extractors(extractor: IndexExtractor, caller: str,
                                                      interactions: list[str], references: list[str]) -> None:
    event = _event(CALLERS[caller], "GET", "/Observation", interactions, "p1", references, now_ms())
    stamped = stamp(event, "event-1", 1, now_ms())
    assert set(index_values(stamped)) == set(extractor.extract(stamped))
    assert len(event["entity"]) <= MAX_ENTITIES + 1
