"""One behaviour suite for every storage backend: SQLite (the reference), MongoDB on an in-process
SecantusDB (skipped when it is not installed), and a real MongoDB when ``MONGODB_URI`` is set (a
replica set; each test gets its own database, dropped afterwards). Index values are built by hand,
so the suite depends on nothing but the storage interface."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import MongoClient

from fhir_server.search.index_values import (
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.plan import (
    AnyCriterion,
    ChainAnyCriterion,
    ChainCriterion,
    CompositeMatch,
    Criterion,
    HasCriterion,
    Include,
    Match,
    MissingMatch,
    Position,
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
from fhir_server.storage.base import (
    HistoryQuery,
    ResourceWrite,
    SearchPage,
    Storage,
    StorageTransaction,
    StoredResource,
)
from fhir_server.storage.mongo import MongoStorage
from fhir_server.storage.sqlite import SqliteStorage

T0 = datetime(2024, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
LOINC, UCUM, MRN = "http://loinc.org", "http://unitsofmeasure.org", "urn:mrn"


def _with_database(uri: str, name: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


BACKENDS = ["sqlite", "mongo-secantus", *(["mongo-real"] if os.environ.get("MONGODB_URI") else [])]


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path) -> Iterator[Storage]:
    if request.param == "sqlite":
        store = SqliteStorage(str(tmp_path / "fhir.db"))
        yield store
        store.close()
        return
    if request.param == "mongo-secantus":
        uri = request.getfixturevalue("secantus_uri_factory")()
    else:
        uri = _with_database(os.environ["MONGODB_URI"], f"fhir_test_{uuid.uuid4().hex[:12]}")
    store = MongoStorage(uri)
    yield store
    store.close()
    with MongoClient(uri) as client:
        client.drop_database(client.get_default_database())


# --- test data ---------------------------------------------------------------------------------------

def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)


def body(resource_type: str, id: str, version: int) -> bytes:
    return f'{{"resourceType": "{resource_type}",  "id":"{id}", "meta": {{"versionId": "{version}"}}}}'.encode()


def change(resource_type: str, id: str, *index: IndexValue, version: int = 1, when: datetime = T0,
           deleted: bool = False) -> ResourceWrite:
    """A version with the index values the extractor adds to every resource (``_id``, ``_lastUpdated``)."""
    moment = int(when.timestamp() * 1000)
    common = (TokenValue("_id", None, id), DateValue("_lastUpdated", moment, moment + 1))
    content = b"" if deleted else body(resource_type, id, version)
    return ResourceWrite(resource_type, id, version, when, deleted, content, () if deleted else (*common, *index))


def put(storage: Storage, *changes: ResourceWrite) -> None:
    def work(tx: StorageTransaction) -> None:
        for c in changes:
            tx.write(c)

    storage.run_in_transaction(work)


def component(code: str, value: float) -> CompositeValue:
    return CompositeValue("component-code-value-quantity",
                          (TokenValue("", LOINC, code), QuantityValue("", value, UCUM, "mm[Hg]")))


def clinic_changes() -> list[ResourceWrite]:
    at = [T0 + timedelta(minutes=i) for i in range(20)]
    return [
        change("Practitioner", "dr1", StringValue("name", "who", "Who"), when=at[0]),
        change("Patient", "p1", StringValue("family", "smith", "Smith"),
               DateValue("birthdate", ms(1980, 1, 1), ms(1981, 1, 1)),
               TokenValue("identifier", MRN, "111"), TokenValue("gender", None, "female"),
               ReferenceValue("general-practitioner", "Practitioner", "dr1"), when=at[1]),
        change("Patient", "p2", StringValue("family", "smithers", "Smithers"),
               DateValue("birthdate", ms(1990, 6, 15), ms(1990, 6, 16)), TokenValue("identifier", MRN, "222"),
               TokenValue("gender", None, "male"), when=at[2]),
        change("Patient", "p3", StringValue("family", "jones", "Jones"), TokenValue("identifier", None, "333"),
               TokenValue("gender", None, "female"), when=at[3]),
        change("Observation", "o1", ReferenceValue("subject", "Patient", "p1"),
               TokenValue("code", LOINC, "8480-6", "systolic blood pressure"),
               QuantityValue("value-quantity", 120.0, UCUM, "mm[Hg]", "mmHg"),
               DateValue("date", ms(2024, 1, 10, 10), ms(2024, 1, 10, 10) + 1),
               component("8480-6", 120.0), component("8462-4", 80.0), when=at[4]),
        change("Observation", "o2", ReferenceValue("subject", "Patient", "p2"),
               ReferenceValue("device", None, None, "http://devices.example/d/1"),
               TokenValue("code", LOINC, "8462-4", "diastolic blood pressure"),
               QuantityValue("value-quantity", 80.0, UCUM, "mm[Hg]"), DateValue("date", ms(2024, 2, 1), ms(2024, 2, 2)),
               when=at[5]),
        change("Observation", "o3", ReferenceValue("subject", "Patient", "p1"),
               TokenValue("code", LOINC, "8480-6", "systolic blood pressure"),
               QuantityValue("value-quantity", 95.0, UCUM, "kg"), DateValue("date", ms(2024, 1, 5), ms(2024, 1, 6)),
               component("8480-6", 80.0), component("8462-4", 120.0), when=at[6]),
        change("Observation", "o4", ReferenceValue("subject", "Patient", "p3"),
               TokenValue("code", "http://snomed.info/sct", "271649006"), when=at[7]),
        change("RiskAssessment", "r1", NumberValue("probability", 0.25), when=at[8]),
        change("RiskAssessment", "r2", NumberValue("probability", 0.8), when=at[9]),
        change("ValueSet", "vs1", UriValue("url", "http://example.org/fhir/ValueSet/a"), when=at[10]),
        change("ValueSet", "vs2", UriValue("url", "http://example.org/fhir/ValueSet/a/b"), when=at[11]),
        change("ValueSet", "vs3", UriValue("url", "http://other.org/vs"), when=at[12]),
    ]


@pytest.fixture
def clinic(storage: Storage) -> Storage:
    put(storage, *clinic_changes())
    return storage


def crit(resource_type: str, param: str, param_type: str, *matches: Match, negate: bool = False) -> Criterion:
    return Criterion(resource_type, param, param_type, matches, negate)


@dataclass(frozen=True)
class Result:
    """One page of a search as the storage answers it, with the walk's count and the includes."""

    matches: list[StoredResource]
    positions: list[Position]
    total: int
    includes: list[StoredResource]
    page: SearchPage


def search(storage: Storage, resource_type: str | tuple[str, ...], *criteria: AnyCriterion,
           **plan: object) -> Result:
    types = (resource_type,) if isinstance(resource_type, str) else resource_type
    query = SearchPlan(types, list(criteria), **plan)  # type: ignore[arg-type]
    page = storage.search(query)
    hits = page.hits[: query.count]
    matches = [h.stored for h in hits]
    includes = storage.includes(matches, query.includes) if query.includes else []
    return Result(matches, [h.position for h in hits], storage.count(query), includes, page)


def found(storage: Storage, resource_type: str, *criteria: AnyCriterion) -> set[str]:
    return {m.id for m in search(storage, resource_type, *criteria, count=100).matches}


def ordered(result: Result) -> list[str]:
    return [m.id for m in result.matches]


# --- reads, writes, versions -------------------------------------------------------------------------

def test_read_returns_the_stored_bytes_unchanged(storage: Storage) -> None:
    raw = b'{"resourceType":"Patient",   "id" : "x1", "z": [1, 2.50, "\\u00e9"]}'
    put(storage, ResourceWrite("Patient", "x1", 1, T0, False, raw))
    stored = storage.read("Patient", "x1")
    assert stored is not None
    assert (stored.body, stored.version, stored.deleted) == (raw, 1, False)
    assert stored.last_updated == T0 and stored.last_updated.tzinfo is not None


def test_read_of_an_unknown_resource_returns_none(storage: Storage) -> None:
    assert storage.read("Patient", "nobody") is None
    assert storage.read_version("Patient", "nobody", 1) is None


def test_update_replaces_the_current_version_and_keeps_the_old_one(storage: Storage) -> None:
    put(storage, change("Patient", "a", StringValue("family", "old", "Old")))
    put(storage, change("Patient", "a", StringValue("family", "new", "New"), version=2, when=T0 + timedelta(seconds=1)))
    current = storage.read("Patient", "a")
    assert current is not None and current.version == 2 and current.body == body("Patient", "a", 2)
    first = storage.read_version("Patient", "a", 1)
    assert first is not None and first.body == body("Patient", "a", 1) and first.last_updated == T0
    assert storage.read_version("Patient", "a", 3) is None
    assert found(storage, "Patient", crit("Patient", "family", "string", StringMatch("new"))) == {"a"}
    assert found(storage, "Patient", crit("Patient", "family", "string", StringMatch("old"))) == set()


def test_delete_leaves_a_tombstone_and_drops_the_resource_from_search(clinic: Storage) -> None:
    put(clinic, change("Observation", "o4", version=2, when=T0 + timedelta(hours=1), deleted=True))
    tombstone = clinic.read("Observation", "o4")
    assert tombstone is not None and tombstone.deleted and tombstone.body == b"" and tombstone.version == 2
    snomed = crit("Observation", "code", "token", TokenMatch(None, "271649006", False))
    assert found(clinic, "Observation", snomed) == set()
    assert search(clinic, "Observation", count=0).total == 3


# --- history -----------------------------------------------------------------------------------------

T1, T2, T3 = T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)


@pytest.fixture
def versions(storage: Storage) -> Storage:
    put(storage, change("Patient", "a", when=T1), change("Patient", "b", when=T1))
    put(storage, change("Patient", "a", version=2, when=T2), change("Observation", "x", when=T2))
    put(storage, change("Patient", "a", version=3, when=T3, deleted=True))
    return storage


def keys(entries: Sequence) -> list[str]:
    return [f"{e.resource_type}/{e.id}/{e.version}" for e in entries]


def test_history_pages_newest_first_with_a_keyset_cursor(versions: Storage) -> None:
    pages, cursor = [], None
    while True:
        page = versions.history(HistoryQuery(count=2, before=cursor))
        assert page.total == 5
        pages.append(keys(page.entries))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == [["Patient/a/3", "Patient/a/2"], ["Observation/x/1", "Patient/b/1"], ["Patient/a/1"]]


def test_history_of_a_type_and_of_an_instance(versions: Storage) -> None:
    assert keys(versions.history(HistoryQuery("Patient")).entries) == [
        "Patient/a/3", "Patient/a/2", "Patient/b/1", "Patient/a/1"]
    instance = versions.history(HistoryQuery("Patient", "a"))
    assert keys(instance.entries) == ["Patient/a/3", "Patient/a/2", "Patient/a/1"] and instance.total == 3
    assert instance.entries[0].deleted and instance.entries[0].body == b""
    assert instance.entries[1].body == body("Patient", "a", 2) and instance.entries[1].last_updated == T2


def test_history_since_keeps_versions_written_at_or_after_the_moment(versions: Storage) -> None:
    page = versions.history(HistoryQuery(since=T2))
    assert keys(page.entries) == ["Patient/a/3", "Patient/a/2", "Observation/x/1"] and page.total == 3


@pytest.mark.parametrize(("low", "high", "expected"), [
    (T1, T1 + timedelta(seconds=1), ["Patient/b/1", "Patient/a/1"]),
    (T2, T3, ["Patient/a/2", "Observation/x/1", "Patient/b/1"]),
    (T1 + timedelta(seconds=1), T2 + timedelta(seconds=1),
     ["Patient/a/2", "Observation/x/1", "Patient/b/1", "Patient/a/1"]),
    (T3, T3 + timedelta(seconds=1), ["Patient/a/3", "Observation/x/1", "Patient/b/1"]),
])
def test_history_at_returns_the_versions_current_during_the_range(versions: Storage, low: datetime, high: datetime,
                                                                   expected: list[str]) -> None:
    assert keys(versions.history(HistoryQuery(at=(low, high))).entries) == expected


def test_history_cursor_pages_within_a_filtered_query(versions: Storage) -> None:
    first = versions.history(HistoryQuery("Patient", since=T1, count=3))
    assert keys(first.entries) == ["Patient/a/3", "Patient/a/2", "Patient/b/1"] and first.next_cursor is not None
    second = versions.history(HistoryQuery("Patient", since=T1, count=3, before=first.next_cursor))
    assert keys(second.entries) == ["Patient/a/1"] and second.next_cursor is None and second.total == 4


# --- transactions ------------------------------------------------------------------------------------

def test_an_exception_inside_a_transaction_stores_nothing(storage: Storage) -> None:
    def work(tx: StorageTransaction) -> None:
        tx.claim("create:Patient?identifier=x")
        tx.write(change("Patient", "a", TokenValue("identifier", None, "x")))
        tx.write(change("Patient", "a", version=2, when=T0 + timedelta(seconds=1)))
        raise ValueError("rejected after writing")

    with pytest.raises(ValueError):
        storage.run_in_transaction(work)
    assert storage.read("Patient", "a") is None
    assert storage.read_version("Patient", "a", 1) is None
    assert storage.history(HistoryQuery()).entries == []
    assert search(storage, "Patient", count=0).total == 0


def test_a_transaction_reads_its_own_writes_and_returns_the_work_result(storage: Storage) -> None:
    def work(tx: StorageTransaction) -> tuple[int, list[str]]:
        tx.claim("k")
        tx.write(change("Patient", "a", TokenValue("identifier", MRN, "1")))
        current = tx.read("Patient", "a")
        matches = tx.find("Patient", [crit("Patient", "identifier", "token", TokenMatch(MRN, "1", True))], 5)
        return (current.version if current else 0), [m.id for m in matches]

    assert storage.run_in_transaction(work) == (1, ["a"])
    assert storage.run_in_transaction(lambda tx: tx.find("Patient", [], 0)) == []


def test_concurrent_conditional_creates_leave_exactly_one_resource(storage: Storage) -> None:
    criteria = [crit("Patient", "identifier", "token", TokenMatch(MRN, "same", True))]
    errors: list[Exception] = []
    start = threading.Barrier(20)

    def create() -> None:
        def work(tx: StorageTransaction) -> None:
            tx.claim(f"create:Patient?identifier={MRN}|same")
            if not tx.find("Patient", criteria, 2):
                tx.write(change("Patient", uuid.uuid4().hex, TokenValue("identifier", MRN, "same")))

        try:
            start.wait()
            storage.run_in_transaction(work)
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert search(storage, "Patient", *criteria).total == 1
    assert len(storage.history(HistoryQuery("Patient")).entries) == 1


# --- search: one test per match type -----------------------------------------------------------------

def test_token_search_by_code_system_and_both(clinic: Storage) -> None:
    def code(*matches: Match, negate: bool = False) -> set[str]:
        return found(clinic, "Observation", crit("Observation", "code", "token", *matches, negate=negate))

    assert code(TokenMatch(None, "8480-6", False)) == {"o1", "o3"}
    assert code(TokenMatch(LOINC, "8462-4", True)) == {"o2"}
    assert code(TokenMatch("http://snomed.info/sct", "8462-4", True)) == set()
    assert code(TokenMatch(LOINC, None, True, match_code=False)) == {"o1", "o2", "o3"}
    assert code(TokenMatch(None, "8480-6", False), TokenMatch(None, "271649006", False)) == {"o1", "o3", "o4"}
    assert code(TokenMatch(None, "8480-6", False), negate=True) == {"o2", "o4"}
    identifier = crit("Patient", "identifier", "token", TokenMatch(None, "333", True))
    assert found(clinic, "Patient", identifier) == {"p3"}
    assert found(clinic, "Patient", crit("Patient", "_id", "token", TokenMatch(None, "p2", False))) == {"p2"}


def test_token_text_is_a_prefix_match_on_the_display(clinic: Storage) -> None:
    def text(value: str) -> set[str]:
        return found(clinic, "Observation", crit("Observation", "code", "token", TokenTextMatch(value)))

    assert text("systolic") == {"o1", "o3"}
    assert text("blood") == set()


@pytest.mark.parametrize(("match", "expected"), [
    (StringMatch("smith"), {"p1", "p2"}),
    (StringMatch("jo"), {"p3"}),
    (StringMatch("Smith", "exact"), {"p1"}),
    (StringMatch("smith", "exact"), set()),
    (StringMatch("ithe", "contains"), {"p2"}),
    (StringMatch("m.t", "contains"), set()),
])
def test_string_search_modes(clinic: Storage, match: StringMatch, expected: set[str]) -> None:
    assert found(clinic, "Patient", crit("Patient", "family", "string", match)) == expected


@pytest.mark.parametrize(("match", "expected"), [
    (ReferenceMatch("Patient", "p1"), {"o1", "o3"}),
    (ReferenceMatch(None, "p2"), {"o2"}),
    (ReferenceMatch("Group", "p1"), set()),
])
def test_reference_search_by_type_and_id(clinic: Storage, match: ReferenceMatch, expected: set[str]) -> None:
    assert found(clinic, "Observation", crit("Observation", "subject", "reference", match)) == expected


def test_reference_search_by_absolute_url(clinic: Storage) -> None:
    device = crit("Observation", "device", "reference", ReferenceMatch(None, None, "http://devices.example/d/1"))
    assert found(clinic, "Observation", device) == {"o2"}


@pytest.mark.parametrize(("prefix", "low", "high", "expected"), [
    (Prefix.EQ, ms(1980, 1, 1), ms(1981, 1, 1), {"p1"}),
    (Prefix.EQ, ms(1980, 5, 1), ms(1980, 6, 1), set()),
    (Prefix.NE, ms(1980, 1, 1), ms(1981, 1, 1), {"p2"}),
    (Prefix.GT, ms(1985, 1, 1), ms(1986, 1, 1), {"p2"}),
    (Prefix.LT, ms(1985, 1, 1), ms(1986, 1, 1), {"p1"}),
    (Prefix.GE, ms(1990, 6, 15), ms(1990, 6, 16), {"p2"}),
    (Prefix.LE, ms(1980, 6, 1), ms(1980, 7, 1), {"p1"}),
    (Prefix.SA, ms(1981, 1, 1), ms(1982, 1, 1), {"p2"}),
    (Prefix.EB, ms(1990, 1, 1), ms(1991, 1, 1), {"p1"}),
    (Prefix.AP, ms(1980, 12, 1), ms(1981, 2, 1), {"p1"}),
])
def test_date_prefixes_compare_stored_and_searched_ranges(clinic: Storage, prefix: Prefix, low: int, high: int,
                                                          expected: set[str]) -> None:
    birthdate = crit("Patient", "birthdate", "date", RangeMatch(prefix, low, high))
    assert found(clinic, "Patient", birthdate) == expected


def test_last_updated_is_searched_like_any_date(clinic: Storage) -> None:
    after = T0 + timedelta(minutes=5)
    since = int(after.timestamp() * 1000)
    updated = crit("Observation", "_lastUpdated", "date", RangeMatch(Prefix.GE, since, since + 1))
    assert found(clinic, "Observation", updated) == {"o2", "o3", "o4"}


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


O2_MINUTE = (_ms(T0 + timedelta(minutes=5)), _ms(T0 + timedelta(minutes=6)))  # o2 was written at its start
O2_MS = (O2_MINUTE[0], O2_MINUTE[0] + 1)


@pytest.mark.parametrize(("prefix", "bounds", "expected"), [
    (Prefix.EQ, O2_MINUTE, {"o2"}),
    (Prefix.NE, O2_MINUTE, {"o1", "o3", "o4"}),
    (Prefix.GT, O2_MINUTE, {"o3", "o4"}),  # o3 was written the millisecond the minute ends
    (Prefix.LT, O2_MINUTE, {"o1"}),
    (Prefix.GE, O2_MINUTE, {"o2", "o3", "o4"}),
    (Prefix.LE, O2_MINUTE, {"o1", "o2"}),
    (Prefix.SA, O2_MINUTE, {"o3", "o4"}),
    (Prefix.EB, O2_MINUTE, {"o1"}),
    (Prefix.AP, O2_MINUTE, {"o2"}),
    (Prefix.EQ, O2_MS, {"o2"}),
    (Prefix.GT, O2_MS, {"o3", "o4"}),
    (Prefix.LE, O2_MS, {"o1", "o2"}),
    (Prefix.EB, O2_MS, {"o1"}),
    (Prefix.EQ, (O2_MS[0] + 1, O2_MS[0] + 2), set()),
])
def test_last_updated_prefixes(clinic: Storage, prefix: Prefix, bounds: tuple[int, int], expected: set[str]) -> None:
    updated = crit("Observation", "_lastUpdated", "date", RangeMatch(prefix, *bounds))
    assert found(clinic, "Observation", updated) == expected
    # as the only criterion (it drives) and beside another one (it is probed per candidate)
    subject = crit("Observation", "subject", "reference", ReferenceMatch("Patient", "p1"),
                   ReferenceMatch("Patient", "p2"), ReferenceMatch("Patient", "p3"))
    assert found(clinic, "Observation", subject, updated) == expected


def test_last_updated_in_chains_alternatives_and_presence(clinic: Storage) -> None:
    p2_minute = RangeMatch(Prefix.EQ, _ms(T0 + timedelta(minutes=2)), _ms(T0 + timedelta(minutes=3)))
    patient_updated = crit("Patient", "_lastUpdated", "date", p2_minute)
    chain = ChainCriterion("Observation", "subject", "Patient", patient_updated)
    assert found(clinic, "Observation", chain) == {"o2"}
    o4_minute = RangeMatch(Prefix.EQ, _ms(T0 + timedelta(minutes=7)), _ms(T0 + timedelta(minutes=8)))
    either = crit("Observation", "_lastUpdated", "date", RangeMatch(Prefix.EQ, *O2_MINUTE), o4_minute)
    assert found(clinic, "Observation", either) == {"o2", "o4"}
    assert found(clinic, "Observation", crit("Observation", "_lastUpdated", "date", MissingMatch(True))) == set()
    assert found(clinic, "Observation", crit("Observation", "_lastUpdated", "date", MissingMatch(False))) == {
        "o1", "o2", "o3", "o4"}


@pytest.mark.parametrize(("prefix", "low", "high", "expected"), [
    (Prefix.EQ, 0.245, 0.255, {"r1"}),
    (Prefix.NE, 0.245, 0.255, {"r2"}),
    (Prefix.GT, 0.45, 0.55, {"r2"}),
    (Prefix.LE, 0.245, 0.255, {"r1"}),
    (Prefix.GE, 0.45, 0.55, {"r2"}),
])
def test_number_prefixes(clinic: Storage, prefix: Prefix, low: float, high: float, expected: set[str]) -> None:
    probability = crit("RiskAssessment", "probability", "number", RangeMatch(prefix, low, high))
    assert found(clinic, "RiskAssessment", probability) == expected


@pytest.mark.parametrize(("match", "expected"), [
    (RangeMatch(Prefix.GT, 99.5, 100.5, UCUM, "mm[Hg]"), {"o1"}),
    (RangeMatch(Prefix.EQ, 79.5, 80.5, UCUM, "mm[Hg]"), {"o2"}),
    (RangeMatch(Prefix.LT, 99.5, 100.5), {"o2", "o3"}),
    (RangeMatch(Prefix.LT, 99.5, 100.5, None, "mm[Hg]"), {"o2"}),
    (RangeMatch(Prefix.EQ, 79.5, 80.5, "http://other.org", "mm[Hg]"), set()),
])
def test_quantity_compares_value_unit_and_system(clinic: Storage, match: RangeMatch, expected: set[str]) -> None:
    assert found(clinic, "Observation", crit("Observation", "value-quantity", "quantity", match)) == expected


@pytest.mark.parametrize(("match", "expected"), [
    (UriMatch("http://example.org/fhir/ValueSet/a"), {"vs1"}),
    (UriMatch("http://example.org/fhir/ValueSet/a", "below"), {"vs1", "vs2"}),
    (UriMatch("http://example.org/fhir/ValueSet/a/b", "above"), {"vs1", "vs2"}),
    (UriMatch("http://other.org/vs/x", "above"), {"vs3"}),
])
def test_uri_exact_below_and_above(clinic: Storage, match: UriMatch, expected: set[str]) -> None:
    assert found(clinic, "ValueSet", crit("ValueSet", "url", "uri", match)) == expected


@pytest.mark.parametrize(("param", "param_type", "missing", "negate", "expected"), [
    ("birthdate", "date", True, False, {"p3"}),
    ("birthdate", "date", False, False, {"p1", "p2"}),
    ("general-practitioner", "reference", True, False, {"p2", "p3"}),
    ("general-practitioner", "reference", True, True, {"p1"}),
])
def test_missing_selects_resources_with_or_without_a_value(clinic: Storage, param: str, param_type: str,
                                                           missing: bool, negate: bool, expected: set[str]) -> None:
    criterion = crit("Patient", param, param_type, MissingMatch(missing), negate=negate)
    assert found(clinic, "Patient", criterion) == expected


def test_composite_parts_must_come_from_the_same_element(clinic: Storage) -> None:
    def components(*parts: Match, negate: bool = False) -> set[str]:
        match = CompositeMatch(parts, ("token", "quantity"))
        return found(clinic, "Observation",
                     crit("Observation", "component-code-value-quantity", "composite", match, negate=negate))

    assert components(TokenMatch(LOINC, "8480-6", True), RangeMatch(Prefix.EQ, 119.5, 120.5)) == {"o1"}
    assert components(TokenMatch(None, "8480-6", False), RangeMatch(Prefix.LT, 99.5, 100.5)) == {"o3"}
    assert components(TokenMatch(None, "8462-4", False), RangeMatch(Prefix.NE, 79.5, 80.5)) == {"o3"}
    assert components(TokenMatch(None, "8480-6", False), RangeMatch(Prefix.EQ, 119.5, 120.5),
                      negate=True) == {"o2", "o3", "o4"}


def test_criteria_are_anded_and_values_ored(clinic: Storage) -> None:
    criteria = (crit("Patient", "gender", "token", TokenMatch(None, "female", False)),
                crit("Patient", "family", "string", StringMatch("smith"), StringMatch("jones")),
                crit("Patient", "identifier", "token", TokenMatch(MRN, None, True, match_code=False)))
    assert found(clinic, "Patient", *criteria) == {"p1"}


def test_positive_and_negated_criteria_on_the_same_parameter_type_combine(clinic: Storage) -> None:
    not_male = crit("Patient", "gender", "token", TokenMatch(None, "male", False), negate=True)
    has_mrn = crit("Patient", "identifier", "token", TokenMatch(MRN, None, True, match_code=False))
    not_111 = crit("Patient", "identifier", "token", TokenMatch(MRN, "111", True), negate=True)
    assert found(clinic, "Patient", not_male, has_mrn) == {"p1"}
    assert found(clinic, "Patient", not_male, not_111) == {"p3"}
    assert found(clinic, "Patient", has_mrn, not_111, not_male) == set()


def test_negative_numbers_and_dates_before_1970_keep_their_order(storage: Storage) -> None:
    put(storage, *[change("RiskAssessment", f"n{i}", NumberValue("probability", v)) for i, v in
                   enumerate([-3.5, -0.25, 0.0, 2.0, 1e-9])],
        change("Patient", "old", DateValue("birthdate", ms(1950, 5, 1), ms(1950, 5, 2))),
        change("Patient", "new", DateValue("birthdate", ms(2001, 5, 1), ms(2001, 5, 2))))

    def probability(prefix: Prefix, low: float, high: float) -> set[str]:
        return found(storage, "RiskAssessment", crit("RiskAssessment", "probability", "number",
                                                     RangeMatch(prefix, low, high)))

    assert probability(Prefix.GT, -1.5, -0.5) == {"n1", "n2", "n3", "n4"}
    assert probability(Prefix.LT, -1.5, -0.5) == {"n0"}
    assert probability(Prefix.EQ, -0.5, 0.5) == {"n1", "n2", "n4"}
    assert probability(Prefix.LE, -0.5, 0.5) == {"n0", "n1", "n2"}
    born = crit("Patient", "birthdate", "date", RangeMatch(Prefix.LT, ms(1960, 1, 1), ms(1961, 1, 1)))
    assert found(storage, "Patient", born) == {"old"}
    born_after = crit("Patient", "birthdate", "date", RangeMatch(Prefix.GE, ms(1940, 1, 1), ms(1941, 1, 1)))
    assert found(storage, "Patient", born_after) == {"old", "new"}


# --- search: chains and _has -------------------------------------------------------------------------

def test_chain_follows_a_reference_to_the_inner_criterion(clinic: Storage) -> None:
    family = crit("Patient", "family", "string", StringMatch("smithers"))
    chain = ChainCriterion("Observation", "subject", "Patient", family)
    assert found(clinic, "Observation", chain) == {"o2"}
    who = crit("Practitioner", "name", "string", StringMatch("who"))
    nested = ChainCriterion("Observation", "subject", "Patient",
                            ChainCriterion("Patient", "general-practitioner", "Practitioner", who))
    assert found(clinic, "Observation", nested) == {"o1", "o3"}
    assert found(clinic, "Observation", ChainCriterion("Observation", "subject", "Group", family)) == set()


def test_a_chain_through_several_target_types_matches_through_any_of_them(clinic: Storage) -> None:
    put(clinic, change("Location", "p2", StringValue("name", "ward 9", "Ward 9")),  # the id of a Patient too
        change("Observation", "o5", ReferenceValue("subject", "Location", "p2"),
               TokenValue("code", "http://snomed.info/sct", "271649006")),
        change("Observation", "o6", ReferenceValue("subject", "Group", "p3")))

    def named(patient_family: str, location_name: str) -> ChainAnyCriterion:
        return ChainAnyCriterion("Observation", "subject", (
            ChainCriterion("Observation", "subject", "Patient",
                           crit("Patient", "family", "string", StringMatch(patient_family))),
            ChainCriterion("Observation", "subject", "Location",
                           crit("Location", "name", "string", StringMatch(location_name)))))

    assert found(clinic, "Observation", named("jones", "ward")) == {"o4", "o5"}  # not o2: Patient/p2 is no ward
    assert found(clinic, "Observation", named("smithers", "nowhere")) == {"o2"}
    assert found(clinic, "Observation", named("nobody", "nowhere")) == set()
    code = crit("Observation", "code", "token", TokenMatch(None, "271649006", False))
    assert found(clinic, "Observation", code, named("smith", "ward")) == {"o5"}
    assert found(clinic, "Observation", named("jones", "ward"),
                 crit("Observation", "code", "token", TokenMatch(None, "271649006", False), negate=True)) == set()
    assert found(clinic, "Observation", named("smith", "ward"),
                 crit("Observation", "code", "token", TokenMatch(None, "271649006", False), negate=True)) == {
        "o1", "o2", "o3"}


def test_has_selects_resources_referenced_by_matching_sources(clinic: Storage) -> None:
    def has(code: str) -> HasCriterion:
        return HasCriterion("Patient", "Observation", "subject",
                            crit("Observation", "code", "token", TokenMatch(None, code, False)))

    assert found(clinic, "Patient", has("8462-4")) == {"p2"}
    assert found(clinic, "Patient", has("8480-6")) == {"p1"}
    assert found(clinic, "Patient", has("8480-6"), has("8462-4")) == set()


# --- search: sort, paging, totals, includes ----------------------------------------------------------

@pytest.mark.parametrize(("sort", "expected"), [
    ([SortKey("birthdate", "date")], ["p1", "p2", "p3"]),
    ([SortKey("birthdate", "date", descending=True)], ["p2", "p1", "p3"]),
    ([SortKey("family", "string")], ["p3", "p1", "p2"]),
    ([SortKey("family", "string", descending=True)], ["p2", "p1", "p3"]),
    ([SortKey("gender", "token"), SortKey("family", "string", descending=True)], ["p1", "p3", "p2"]),
    ([SortKey("_id", "token", descending=True)], ["p3", "p2", "p1"]),
    ([SortKey("_lastUpdated", "date", descending=True)], ["p3", "p2", "p1"]),
])
def test_sort_puts_missing_values_last_in_either_direction(clinic: Storage, sort: list[SortKey],
                                                           expected: list[str]) -> None:
    assert ordered(search(clinic, "Patient", sort=sort)) == expected


def test_sort_by_date_uses_the_start_ascending_and_the_end_descending(clinic: Storage) -> None:
    assert ordered(search(clinic, "Observation", sort=[SortKey("date", "date")])) == ["o3", "o1", "o2", "o4"]
    assert ordered(search(clinic, "Observation", sort=[SortKey("date", "date", True)])) == ["o2", "o1", "o3", "o4"]


@pytest.mark.parametrize("sort", [[], [SortKey("family", "string")], [SortKey("gender", "token", True)],
                                  [SortKey("birthdate", "date", True), SortKey("_id", "token")]])
def test_keyset_positions_page_forwards_and_backwards(clinic: Storage, sort: list[SortKey]) -> None:
    everything = search(clinic, "Patient", sort=sort)
    first = search(clinic, "Patient", sort=sort, count=2)
    assert ordered(first) == ordered(everything)[:2] and len(first.page.hits) == 3  # one more: another page
    second = search(clinic, "Patient", sort=sort, count=2, after=first.positions[-1])
    assert ordered(second) == ordered(everything)[2:] and len(second.page.hits) == 1
    back = storage_hits(clinic, SearchPlan(("Patient",), sort=sort, count=2, before=second.positions[0]))
    assert back == list(reversed(ordered(everything)[:2]))  # nearest first


def storage_hits(storage: Storage, plan: SearchPlan) -> list[str]:
    return [h.stored.id for h in storage.search(plan).hits]


def test_count_zero_returns_no_hits_and_counting_may_stop_early(clinic: Storage) -> None:
    result = search(clinic, "Observation", count=0)
    assert result.matches == [] and result.total == 4
    assert clinic.count(SearchPlan(("Observation",)), limit=2) == 2


def test_a_walk_leaves_out_resources_created_after_it_began(clinic: Storage) -> None:
    began = T0 + timedelta(minutes=30)
    put(clinic, change("Patient", "late", StringValue("family", "late", "Late"), when=began + timedelta(seconds=1)))
    walk = Snapshot(began - timedelta(seconds=2), began)
    assert ordered(search(clinic, "Patient", snapshot=walk)) == ["p1", "p2", "p3"]
    assert search(clinic, "Patient", snapshot=walk).total == 3
    assert len(search(clinic, "Patient").matches) == 4


def test_a_sorted_walk_returns_resources_written_since_stable_apart_with_their_older_versions(
        clinic: Storage) -> None:
    stable = T0 + timedelta(minutes=30)
    walk = Snapshot(stable, stable + timedelta(seconds=2))
    put(clinic, change("Patient", "p2", StringValue("family", "adams", "Adams"), version=2,
                       when=stable + timedelta(seconds=1)),
        change("Patient", "new", StringValue("family", "new", "New"), when=stable + timedelta(seconds=1)),
        change("Patient", "later", when=walk.began + timedelta(seconds=1)))
    result = search(clinic, "Patient", snapshot=walk, sort=[SortKey("family", "string")])
    assert ordered(result) == ["p3", "p1"] and result.total == 2
    changed = {c.stored.id: c for c in result.page.changed}
    assert set(changed) == {"p2", "new"}
    assert changed["p2"].stored.version == 2 and changed["p2"].at_stable.version == 1
    assert changed["p2"].after_stable.version == 2 and changed["p2"].tiebreak
    assert changed["new"].at_stable is None and changed["new"].after_stable.version == 1


def test_system_search_spans_several_types(clinic: Storage) -> None:
    page = search(clinic, ("Patient", "Practitioner"), sort=[SortKey("_id", "token")])
    assert ordered(page) == ["dr1", "p1", "p2", "p3"] and page.total == 4
    assert {m.resource_type for m in page.matches} == {"Patient", "Practitioner"}


def _included(page: Result) -> set[str]:
    return {f"{s.resource_type}/{s.id}" for s in page.includes}


def test_include_adds_referenced_resources_and_iterate_follows_them(clinic: Storage) -> None:
    systolic = crit("Observation", "code", "token", TokenMatch(None, "8480-6", False))
    subject = Include("Observation", "subject")
    practitioner = Include("Patient", "general-practitioner", iterate=True)
    page = search(clinic, "Observation", systolic, includes=[subject])
    assert {m.id for m in page.matches} == {"o1", "o3"} and _included(page) == {"Patient/p1"}
    page = search(clinic, "Observation", systolic, includes=[subject, practitioner])
    assert _included(page) == {"Patient/p1", "Practitioner/dr1"}
    groups = search(clinic, "Observation", systolic, includes=[Include("Observation", "subject", "Group")])
    assert _included(groups) == set()


def test_include_wildcard_follows_every_reference_with_a_target(clinic: Storage) -> None:
    diastolic = crit("Observation", "code", "token", TokenMatch(None, "8462-4", False))
    assert _included(search(clinic, "Observation", diastolic, includes=[Include("Observation", "*")])) == {"Patient/p2"}


def test_revinclude_adds_resources_that_reference_the_matches(clinic: Storage) -> None:
    smith = crit("Patient", "family", "string", StringMatch("smith", "prefix"))
    page = search(clinic, "Patient", smith, includes=[Include("Observation", "subject", "Patient", reverse=True)])
    assert {m.id for m in page.matches} == {"p1", "p2"}
    assert _included(page) == {"Observation/o1", "Observation/o2", "Observation/o3"}
    wildcard = search(clinic, "Patient", smith, includes=[Include("Observation", "*", reverse=True)])
    assert _included(wildcard) == {"Observation/o1", "Observation/o2", "Observation/o3"}


# --- MongoDB only ------------------------------------------------------------------------------------

def test_mongo_storage_refuses_a_server_without_transactions(tmp_path) -> None:
    secantus = pytest.importorskip("secantus")
    server = secantus.SecantusDBServer(storage_path=str(tmp_path), replica_set_name=None)
    server.start()
    try:
        with pytest.raises(RuntimeError, match="replica set.*single node is enough"):
            MongoStorage(f"mongodb://127.0.0.1:{server.port}/fhir?directConnection=true")
    finally:
        server.stop()


def test_secantus_uri_factory_hands_out_fresh_databases(secantus_uri_factory: Callable[[], str]) -> None:
    first, second = secantus_uri_factory(), secantus_uri_factory()
    assert first != second
    store, other = MongoStorage(first), MongoStorage(second)
    try:
        put(store, change("Patient", "a"))
        assert other.read("Patient", "a") is None
    finally:
        store.close()
        other.close()
