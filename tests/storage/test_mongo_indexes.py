"""Every compiled MongoDB filter must be served by a declared index. Checked statically on the
compiled filters and the declared specs, because SecantusDB's ``explain()`` is unreliable:

- a search filter has no top-level ``$`` operator, and its first field (its lead) carries an
  equality, ``$in`` or range that is the leading field of the expected index: SecantusDB serves the
  first field it can and MongoDB plans any of them;
- a history filter's equality fields are the leading fields of the expected index, followed by the
  field of its one range.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import MongoClient

from fhir_server.errors import FhirError
from fhir_server.search.plan import (
    AnyCriterion,
    ChainAnyCriterion,
    ChainCriterion,
    CompartmentCriterion,
    CompositeMatch,
    Criterion,
    HasCriterion,
    Include,
    Match,
    MissingMatch,
    Prefix,
    RangeMatch,
    ReferenceMatch,
    SearchPlan,
    Snapshot,
    SortKey,
    StringMatch,
    TokenMatch,
    TokenTextMatch,
    UriMatch,
)
from fhir_server.storage.base import HistoryQuery, history_key
from fhir_server.storage import mongo_search
from fhir_server.storage.mongo import HISTORY_INDEXES, MongoStorage, changed_filter, history_filters, members_filter
from fhir_server.storage.mongo_search import RESOURCE_INDEXES, Compiler, Filter, revinclude_filter

Indexes = dict[str, list[tuple[str, int]]]
_RANGE_OPERATORS = {"$gt", "$gte", "$lt", "$lte"}
T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _is_point(condition: Any) -> bool:
    return not isinstance(condition, dict) or condition.keys() == {"$in"}


def _is_range(condition: Any) -> bool:
    return isinstance(condition, dict) and bool(condition) and condition.keys() <= _RANGE_OPERATORS


def lead_index(query: Filter, indexes: Indexes) -> str | None:
    """The index led by the filter's first field, when that field has an indexable condition."""
    assert not [key for key in query if key.startswith("$")], query
    field, condition = next(iter(query.items()))
    if not (_is_point(condition) or _is_range(condition)):
        return None
    led = [name for name, keys in indexes.items() if keys[0][0] == field]
    return min(led, key=lambda name: len(indexes[name])) if led else None


def prefix_indexes(query: Filter, indexes: Indexes) -> set[str]:
    """The indexes whose leading fields are the filter's equality fields, then its range field."""
    assert not [key for key in query if key.startswith("$")], query
    equal = {k for k, v in query.items() if _is_point(v)}
    ranged = [k for k, v in query.items() if _is_range(v)]
    names = set()
    for name, keys in indexes.items():
        fields = [field for field, _ in keys]
        if set(fields[: len(equal)]) != equal:
            continue
        if ranged and fields[len(equal): len(equal) + 1] != ranged[:1]:
            continue
        names.add(name)
    return names


class RecordingFetch:
    """Stands in for the database in chain and ``_has`` lookups, remembering the inner filters."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.queries: list[Filter] = []

    def __call__(self, query: Filter, projection: dict[str, int], limit: int) -> list[dict[str, Any]]:
        self.queries.append(query)
        return self.docs


def compiled(*criteria: AnyCriterion, types: tuple[str, ...] = ("Observation",),
             fetch: RecordingFetch | None = None) -> Filter:
    return Compiler(fetch or RecordingFetch([])).filter(types, list(criteria))


def crit(param: str, param_type: str, *matches: Match, resource_type: str = "Observation",
         negate: bool = False) -> Criterion:
    return Criterion(resource_type, param, param_type, matches, negate)


LOINC = "http://loinc.org"
DAY = 86_400_000
PLANS: dict[str, tuple[Criterion, str]] = {
    "token code": (crit("code", "token", TokenMatch(None, "8480-6", False)), "tok_kc"),
    "token system and code": (crit("code", "token", TokenMatch(LOINC, "8480-6", True)), "tok_kc"),
    "token codes ored": (crit("code", "token", TokenMatch(None, "a", False), TokenMatch(LOINC, "b", True)), "tok_kc"),
    "token system only": (crit("code", "token", TokenMatch(LOINC, None, True, match_code=False)), "tok_ks"),
    "token text": (crit("code", "token", TokenTextMatch("systolic")), "tok_kt"),
    "token present": (crit("code", "token", MissingMatch(False)), "tok_kc"),
    "string prefix": (crit("family", "string", StringMatch("smi"), resource_type="Patient"), "str_kn"),
    "string exact": (crit("family", "string", StringMatch("Smith", "exact"), resource_type="Patient"), "str_ke"),
    "string contains": (crit("family", "string", StringMatch("mit", "contains"), resource_type="Patient"), "str_kn"),
    "reference": (crit("subject", "reference", ReferenceMatch("Patient", "p1")), "ref_ki"),
    "reference ids ored": (crit("subject", "reference", ReferenceMatch("Patient", "p1"),
                                ReferenceMatch(None, "p2")), "ref_ki"),
    "reference url": (crit("subject", "reference", ReferenceMatch(None, None, "http://x.org/Patient/1")), "ref_ku"),
    "date eq": (crit("date", "date", RangeMatch(Prefix.EQ, 0, DAY)), "dt_klo"),
    "date ge": (crit("date", "date", RangeMatch(Prefix.GE, 0, DAY)), "dt_khi"),
    "date le": (crit("date", "date", RangeMatch(Prefix.LE, 0, DAY)), "dt_klo"),
    "date ne": (crit("date", "date", RangeMatch(Prefix.NE, 0, DAY)), "dt_klo"),
    "lastUpdated gt": (crit("_lastUpdated", "date", RangeMatch(Prefix.GT, 0, 1000)), "dt_khi"),
    "lastUpdated sa": (crit("_lastUpdated", "date", RangeMatch(Prefix.SA, 0, 1000)), "dt_klo"),
    "number": (crit("probability", "number", RangeMatch(Prefix.GT, 0.45, 0.55), resource_type="RiskAssessment"),
               "num_kv"),
    "quantity": (crit("value-quantity", "quantity", RangeMatch(Prefix.LT, 99.5, 100.5)), "qty_kv"),
    "quantity with unit": (crit("value-quantity", "quantity", RangeMatch(Prefix.EQ, 99.5, 100.5, None, "mg")),
                           "qty_kc"),
    "quantity in canonical units": (crit("value-quantity:canonical", "quantity", RangeMatch(
        Prefix.GT, 0.1, 0.1, "urn:fhir-server:ucum-canonical", "kilogram")), "qty_kc"),
    "uri": (crit("url", "uri", UriMatch("http://x.org/vs"), resource_type="ValueSet"), "uri_ku"),
    "uri above": (crit("url", "uri", UriMatch("http://x.org/vs/a", "above"), resource_type="ValueSet"), "uri_ku"),
    "uri below": (crit("url", "uri", UriMatch("http://x.org/vs", "below"), resource_type="ValueSet"), "uri_ku"),
    "composite": (crit("code-value-quantity", "composite", CompositeMatch(
        (TokenMatch(LOINC, "8480-6", True), RangeMatch(Prefix.GT, 119.5, 120.5)), ("token", "quantity"))), "cmp_k"),
}


@pytest.mark.parametrize("name", PLANS)
def test_each_criterion_type_compiles_to_a_filter_an_index_serves(name: str) -> None:
    criterion, index = PLANS[name]
    query = compiled(criterion, types=(criterion.resource_type,))
    assert lead_index(query, RESOURCE_INDEXES) == index, query


def test_leads_are_keys_qualified_by_type_and_parameter() -> None:
    query = compiled(crit("code", "token", TokenMatch(None, "a", False), TokenMatch(LOINC, "b", True)))
    assert query["tok.kc"] == {"$in": ["Observation.code|a", "Observation.code|b"]}
    dated = compiled(crit("date", "date", RangeMatch(Prefix.GE, 0, DAY)))
    assert dated["dt.khi"]["$gt"].startswith("Observation.date|") and dated["dt.khi"]["$lt"].startswith(
        "Observation.date|")


def test_the_first_positive_criterion_leads_and_the_rest_stay_in_one_document() -> None:
    query = compiled(crit("code", "token", TokenMatch(None, "a", False), negate=True),
                     crit("subject", "reference", MissingMatch(True)),
                     crit("date", "date", RangeMatch(Prefix.GE, 0, 1)),
                     crit("code", "token", TokenMatch(None, "b", False)),
                     crit("category", "token", TokenMatch(None, "vital-signs", False)))
    assert lead_index(query, RESOURCE_INDEXES) == "dt_khi"
    assert list(query) == ["dt.khi", "tok.kc", "type", "d", "dt", "tok", "ref"]
    assert len(query["tok"]["$all"]) == 2 and "$not" in query["tok"] and "$not" in query["ref"]


def test_a_search_without_criteria_and_a_system_search_use_the_type_indexes() -> None:
    assert lead_index(compiled(), RESOURCE_INDEXES) == "type_created"
    system = compiled(crit("_id", "token", TokenMatch(None, "x", False)), types=("Patient", "Observation"))
    assert lead_index(system, RESOURCE_INDEXES) == "tok_kc"
    ranged = compiled(crit("_lastUpdated", "date", RangeMatch(Prefix.GE, 0, 1)), types=("Patient", "Observation"))
    assert lead_index(ranged, RESOURCE_INDEXES) == "type_created"


def test_paged_walk_filters_keep_their_lead_and_changed_matches_lead_with_the_update_time() -> None:
    code = crit("code", "token", TokenMatch(None, "8480-6", False))
    walk = Snapshot(T0, T0 + timedelta(seconds=2))
    sorted_walk = SearchPlan(("Observation",), [code], sort=[SortKey("date", "date", True)], snapshot=walk)
    unsorted_walk = SearchPlan(("Observation",), [code], snapshot=walk)
    for plan in (sorted_walk, unsorted_walk):
        assert lead_index(members_filter(compiled(code), plan), RESOURCE_INDEXES) == "tok_kc"
    assert lead_index(members_filter(compiled(), unsorted_walk), RESOURCE_INDEXES) == "type_created"
    assert lead_index(changed_filter(compiled(code), sorted_walk), RESOURCE_INDEXES) == "updated"


def test_compartment_criteria_lead_with_the_reference_key() -> None:
    query = compiled(CompartmentCriterion("Observation", ("Observation.subject", "Observation.performer"),
                                          "Patient", "p1"))
    assert query["ref.ki"] == {"$in": ["Observation.subject|p1", "Observation.performer|p1"]}
    assert lead_index(query, RESOURCE_INDEXES) == "ref_ki"


def test_chain_queries_are_served_on_both_sides() -> None:
    fetch = RecordingFetch([{"id": "p1"}, {"id": "p2"}])
    inner = crit("family", "string", StringMatch("smi"), resource_type="Patient")
    query = compiled(ChainCriterion("Observation", "subject", "Patient", inner), fetch=fetch)
    assert query["ref.ki"] == {"$in": ["Observation.subject|p1", "Observation.subject|p2"]}
    assert lead_index(query, RESOURCE_INDEXES) == "ref_ki"
    assert [lead_index(q, RESOURCE_INDEXES) for q in fetch.queries] == ["str_kn"]


class FetchByType(RecordingFetch):
    """Answers each inner query with the ids stored for the type it searches."""

    def __init__(self, ids: dict[str, list[str]]) -> None:
        super().__init__([])
        self.ids = ids

    def __call__(self, query: Filter, projection: dict[str, int], limit: int) -> list[dict[str, Any]]:
        self.queries.append(query)
        return [{"id": i} for i in self.ids.get(query["type"], [])][:limit]


def _named_subject(*types: str) -> ChainAnyCriterion:
    return ChainAnyCriterion("Observation", "subject", tuple(
        ChainCriterion("Observation", "subject", t, crit("name", "string", StringMatch("smi"), resource_type=t))
        for t in types))


def test_a_chain_through_several_target_types_is_one_reference_condition_led_by_every_id() -> None:
    fetch = FetchByType({"Patient": ["p1", "p2"], "Location": ["p2", "l1"]})
    query = compiled(_named_subject("Location", "Patient", "Group"), fetch=fetch)
    assert query["ref.ki"] == {"$in": ["Observation.subject|p2", "Observation.subject|l1", "Observation.subject|p1"]}
    assert lead_index(query, RESOURCE_INDEXES) == "ref_ki"
    assert query["ref"] == {"$elemMatch": {"p": "Observation.subject", "$or": [
        {"tt": "Location", "ti": {"$in": ["p2", "l1"]}}, {"tt": "Patient", "ti": {"$in": ["p1", "p2"]}}]}}
    assert [lead_index(q, RESOURCE_INDEXES) for q in fetch.queries] == ["str_kn"] * 3
    only_patients = compiled(_named_subject("Location", "Patient"), fetch=FetchByType({"Patient": ["p1"]}))
    assert only_patients["ref"] == {"$elemMatch": {"p": "Observation.subject", "tt": "Patient", "ti": {"$in": ["p1"]}}}
    nothing = compiled(_named_subject("Location", "Patient"), fetch=FetchByType({}))
    assert nothing["ref.ki"] == {"$in": []} and nothing["ref"] == {"$elemMatch": {"p": "Observation.subject",
                                                                                   "ti": {"$in": []}}}


def test_a_chain_through_several_target_types_reaches_at_most_the_join_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongo_search, "MAX_JOIN_IDS", 3)
    compiled(_named_subject("Location", "Patient"), fetch=FetchByType({"Patient": ["p1", "p2"], "Location": ["l1"]}))
    with pytest.raises(FhirError) as refused:
        compiled(_named_subject("Location", "Patient"),
                 fetch=FetchByType({"Patient": ["p1", "p2"], "Location": ["l1", "l2"]}))
    assert refused.value.status == 400 and refused.value.issues[0].code == "too-costly"


def test_has_queries_are_served_on_both_sides() -> None:
    fetch = RecordingFetch([{"ref": [{"p": "Observation.subject", "tt": "Patient", "ti": "p1"},
                                     {"p": "Observation.performer", "tt": "Patient", "ti": "p9"}]}])
    inner = crit("code", "token", TokenMatch(None, "8480-6", False))
    query = compiled(HasCriterion("Patient", "Observation", "subject", inner), types=("Patient",), fetch=fetch)
    assert query["id"] == {"$in": ["p1"]}
    assert lead_index(query, RESOURCE_INDEXES) == "id_type"
    assert [lead_index(q, RESOURCE_INDEXES) for q in fetch.queries] == ["tok_kc"]


def test_a_chain_matching_too_many_resources_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongo_search, "MAX_JOIN_IDS", 1)
    inner = crit("family", "string", StringMatch("smi"), resource_type="Patient")
    with pytest.raises(FhirError) as refused:
        compiled(ChainCriterion("Observation", "subject", "Patient", inner),
                 fetch=RecordingFetch([{"id": "p1"}, {"id": "p2"}]))
    assert refused.value.status == 400 and refused.value.issues[0].code == "too-costly"


def test_revinclude_is_served_with_a_named_or_any_reference() -> None:
    named = revinclude_filter(Include("Observation", "subject", "Patient", reverse=True), ["Patient"], ["p1"])
    assert lead_index(named, RESOURCE_INDEXES) == "ref_ki"
    wildcard = revinclude_filter(Include("Observation", "*", reverse=True), ["Patient"], ["p1"])
    assert lead_index(wildcard, RESOURCE_INDEXES) == "ref_ti"


CURSOR = (T0, history_key("Patient", "a", 2))
HISTORY: dict[str, tuple[HistoryQuery, str]] = {
    "system": (HistoryQuery(), "key"),
    "system since": (HistoryQuery(since=T0), "key"),
    "system page": (HistoryQuery(before=CURSOR), "key"),
    "type": (HistoryQuery("Patient"), "type_key"),
    "type page since": (HistoryQuery("Patient", since=T0, before=CURSOR), "type_key"),
    "instance": (HistoryQuery("Patient", "a"), "instance_key"),
    "instance page": (HistoryQuery("Patient", "a", before=CURSOR), "instance_key"),
}


@pytest.mark.parametrize("name", HISTORY)
def test_history_queries_are_served_by_an_index_in_both_filters(name: str) -> None:
    query, index = HISTORY[name]
    for history_filter in history_filters(query):
        assert index in prefix_indexes(history_filter, HISTORY_INDEXES), history_filter


def test_history_at_leads_with_the_history_key() -> None:
    count_filter, page_filter = history_filters(HistoryQuery(at=(T0, T0 + timedelta(days=1)), before=CURSOR))
    assert lead_index(count_filter, HISTORY_INDEXES) == lead_index(page_filter, HISTORY_INDEXES) == "key"


def test_startup_creates_every_declared_index(secantus_uri_factory: Callable[[], str]) -> None:
    uri = secantus_uri_factory()
    MongoStorage(uri).close()
    MongoStorage(uri).close()  # a second start finds them in place
    with MongoClient(uri) as client:
        db = client.get_default_database()
        assert set(RESOURCE_INDEXES) <= set(db.resources.index_information())
        assert set(HISTORY_INDEXES) <= set(db.history.index_information())
