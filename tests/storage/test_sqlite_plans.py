"""The SQLite backend answers searches with index lookups, not scans: every statement a
representative search runs is checked with EXPLAIN QUERY PLAN on a small store (no ANALYZE, as a
fresh server has none). A scan of ``resource``, ``history`` or an index table would make the search
grow with the store (bench/search_bench.py measures that at 540,000 resources), and an index that
does not cover its query costs a row lookup per entry."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from consent.policy import holder_code, holder_label, with_holders
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.plan import Criterion, SearchPlan, TokenMatch
from fhir_server.search.query import parse_search
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.paging import new_snapshot
from fhir_server.service.stamping import dump, stamp
from fhir_server.storage import sqlite_search
from fhir_server.storage.base import HOLDER_SYSTEM, ResourceWrite
from fhir_server.storage.sqlite import SqliteStorage

ABHA = "https://healthid.abdm.gov.in"
LOINC = "http://loinc.org"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
BIG_TABLES = ("resource", "history", "idx_string", "idx_token", "idx_reference", "idx_date", "idx_number",
              "idx_quantity", "idx_uri")
_STEP = re.compile(r"^(SCAN|SEARCH) (\w+)(?: USING .*?\((.*)\))?")
_WIDE = ("type=?", "pkey=?")
_ALIASES = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)\s+(?:AS\s+)?(\w+)", re.IGNORECASE)

SEARCHES = [
    "Patient?_id=p1",
    "Observation?code=http://loinc.org|2339-0",
    "Observation?code=2339-0",
    "Observation?subject=Patient/p1&date=ge2021-01-01&date=lt2022-01-01",
    "Observation?date=ge2023-06-01",
    "Patient?name=sha",
    "Patient?family:exact=Sharma",
    "Observation?subject:Patient.identifier=https://healthid.abdm.gov.in|91-0000-0000-0001",
    "Observation?subject:Patient.name=sha&code=2339-0",
    "Observation?subject.identifier=https://healthid.abdm.gov.in|91-0000-0000-0001",
    "Observation?subject.name=sha&code=2339-0",
    "Observation?subject.organization.name=primary&status:not=final",
    "Observation?subject=Patient/p1&_include=Observation:subject",
    "Patient?identifier=https://healthid.abdm.gov.in|91-0000-0000-0001&_revinclude=Observation:subject",
    "Patient?given=asha&family=sharma&_has:Observation:subject:code=4548-4",
    "Patient?given=as&family=sh&gender=female",
    "Patient?_has:Observation:subject:code=4548-4",
    "Observation?subject=Patient/p1&component-code-value-quantity=http://loinc.org|8480-6$gt140",
    "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt140",
    "Observation?subject=Patient/p1&_sort=-date&_count=2",
    "Observation?code=2339-0&_sort=-date,_lastUpdated",
    "Observation?subject=Patient/p1&code:not=2339-0&value-quantity=gt100",
    "Observation?subject=Patient/p1&value-quantity:missing=true",
    "Observation?value-quantity=gt5.5|http://unitsofmeasure.org|%25",
    "Observation?value-quantity=gt100000|http://unitsofmeasure.org|g",
    "Observation?value-quantity=gt5.5||%25",
    "Encounter?subject=Patient/p2&_revinclude=Observation:encounter&_include=Encounter:subject",
    "Patient?birthdate=1980",
]


def _patient(n: int, given: str, family: str) -> dict:
    return {"resourceType": "Patient", "id": f"p{n}", "name": [{"family": family, "given": [given]}],
            "identifier": [{"system": ABHA, "value": f"91-0000-0000-000{n}"}], "gender": "female",
            "birthDate": f"19{70 + n}-05-0{n}"}


def _observation(n: int, patient: int, code: str, when: datetime, value: float, unit: str) -> dict:
    observation = {"resourceType": "Observation", "id": f"o{n}", "status": "final",
                   "code": {"coding": [{"system": LOINC, "code": code}]},
                   "subject": {"reference": f"Patient/p{patient}"},
                   "encounter": {"reference": f"Encounter/e{patient}"},
                   "effectiveDateTime": when.isoformat()}
    if code == "85354-9":
        observation["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": c}]},
             "valueQuantity": {"value": v, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
            for c, v in (("8480-6", value), ("8462-4", value * 0.65))]
    else:
        observation["valueQuantity"] = {"value": value, "system": "http://unitsofmeasure.org", "code": unit}
    return observation


def _resources() -> Iterator[dict]:
    names = [("Asha", "Sharma"), ("Ravi", "Shah"), ("Meena", "Iyer"), ("Asha", "Nair")]
    for n, (given, family) in enumerate(names, start=1):
        yield _patient(n, given, family)
        yield {"resourceType": "Encounter", "id": f"e{n}", "status": "finished",
               "class": {"code": "AMB"}, "subject": {"reference": f"Patient/p{n}"},
               "period": {"start": "2022-03-01T10:00:00Z", "end": "2022-03-01T10:30:00Z"}}
    codes = [("2339-0", "mg/dL"), ("4548-4", "%"), ("85354-9", "mm[Hg]"), ("29463-7", "kg")]
    for n in range(40):
        code, unit = codes[n % len(codes)]
        yield _observation(n, n % 4 + 1, code, T0 - timedelta(days=37 * n), 100.0 + n, unit)


@pytest.fixture(scope="module")
def registry() -> SearchRegistry:
    return SearchRegistry.load()


@pytest.fixture
def store(tmp_path, registry: SearchRegistry) -> Iterator[SqliteStorage]:
    storage = SqliteStorage(str(tmp_path / "plans.db"))
    extractor = IndexExtractor(registry)
    writes = []
    for resource in _resources():
        stamped = stamp(resource, resource["id"], 1, T0)
        writes.append(ResourceWrite(resource["resourceType"], resource["id"], 1, T0, False, dump(stamped),
                                    extractor.extract(stamped)))
    storage.run_in_transaction(lambda tx: [tx.write(w) for w in writes])
    yield storage
    storage.close()


def _scans(conn: sqlite3.Connection, sql: str) -> list[str]:
    """The steps of the plan of ``sql`` that read a big table (named or aliased) in full or by a
    prefix as wide as a resource type or a whole parameter (``type=?``, ``pkey=?``), or that read an
    index table's rows besides its index (allowed for the first part of a composite only: its
    ``grp`` joins the other parts)."""
    tables = {alias: table for table, alias in _ALIASES.findall(sql) if table in BIG_TABLES}
    tables.update({t: t for t in BIG_TABLES})
    found = []
    for row in conn.execute("EXPLAIN QUERY PLAN " + sql):
        step = _STEP.match(row[3])
        if not step or step.group(2) not in tables:
            continue
        wide = step.group(1) == "SCAN" or step.group(3) in _WIDE
        uncovered = re.match(r"SEARCH (\w+) USING INDEX idx_", row[3]) and not re.fullmatch(r"c\d+", step.group(2))
        if wide or uncovered:
            found.append(row[3])
    return found


def _search_traced(store: SqliteStorage, plan: SearchPlan) -> tuple[list[str], int, list[str]]:
    """The ids of ``plan``'s page, its count, and every statement the two ran on this thread's reader."""
    conn = store._reader()  # the connection searches on this thread use
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        ids = [hit.stored.id for hit in store.search(plan).hits]
        total = store.count(plan, 10_000)
    finally:
        conn.set_trace_callback(None)
    return ids, total, statements


@pytest.mark.parametrize("query", SEARCHES)
def test_a_representative_search_runs_only_index_lookups(store: SqliteStorage, registry: SearchRegistry,
                                                         query: str) -> None:
    resource_type, _, query_string = query.partition("?")
    plan = parse_search(resource_type, parse_qsl(query_string), registry, strict=True, default_count=20,
                        max_count=100, base_url="http://fhir.example/")
    plan.snapshot = new_snapshot()
    conn = store._reader()  # the connection searches on this thread use
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        page = store.search(plan)
        store.count(plan, 10_000)
        if plan.includes:
            store.includes([hit.stored for hit in page.hits], plan.includes)
    finally:
        conn.set_trace_callback(None)
    statements = [s for s in statements if not s.startswith(("BEGIN", "COMMIT"))]
    assert statements
    scans = {sql: found for sql in statements if (found := _scans(conn, sql))}
    assert scans == {}


def test_a_search_finds_what_it_should_on_the_plan_store(store: SqliteStorage, registry: SearchRegistry) -> None:
    plan = parse_search("Observation", [("subject", "Patient/p1"), ("_sort", "-date")], registry, strict=True,
                        default_count=20, max_count=100)
    ids = [hit.stored.id for hit in store.search(plan).hits]
    assert ids == [f"o{n}" for n in range(0, 40, 4)]


@pytest.mark.parametrize("small_enough", [100, 1])
@pytest.mark.parametrize("count", [20, 0])
def test_two_small_unordered_sources_are_intersected_not_probed(store: SqliteStorage, registry: SearchRegistry,
                                                               count: int, small_enough: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``given=as`` (Asha Sharma, Asha Nair) and ``family=sh`` (Sharma, Shah) are both prefixes: the
    page and the count read both index ranges and keep the pks they share, also when both are
    larger than ``SMALL_ENOUGH`` (here 1) but of a size."""
    monkeypatch.setattr(sqlite_search, "SMALL_ENOUGH", small_enough)
    plan = parse_search("Patient", [("given", "as"), ("family", "sh"), ("_count", str(count))], registry,
                        strict=True, default_count=20, max_count=100)
    plan.snapshot = new_snapshot()
    ids, total, statements = _search_traced(store, plan)
    assert ids == (["p1"] if count else []) and total == 1
    assert any(" INTERSECT " in sql for sql in statements)


HELD_SEARCHES = ["Observation?status=final", "Patient?name=sha", "Observation?value-quantity=gt100",
                 "Observation?date=ge2020-01-01"]


@pytest.fixture
def held_store(tmp_path, registry: SearchRegistry) -> Iterator[SqliteStorage]:
    """The plan store's resources, each held by facility ``a`` or ``b`` (by the parity of its number)."""
    storage = SqliteStorage(str(tmp_path / "held.db"))
    extractor = IndexExtractor(registry)
    writes = []
    for resource in _resources():
        facility = "ab"[int(resource["id"][1:]) % 2]
        stamped = stamp(with_holders(resource, [holder_label(facility)]), resource["id"], 1, T0)
        writes.append(ResourceWrite(resource["resourceType"], resource["id"], 1, T0, False, dump(stamped),
                                    extractor.extract(stamped)))
    storage.run_in_transaction(lambda tx: tx.write_many(writes))
    yield storage
    storage.close()


@pytest.mark.parametrize("facility", ["a", "b"])
@pytest.mark.parametrize("query", HELD_SEARCHES)
def test_a_record_holder_guard_is_checked_on_the_driving_index(held_store: SqliteStorage, registry: SearchRegistry,
                                                              query: str, facility: str) -> None:
    """The page and the count keep only the holder's records, and the count reads the driving
    index alone: no ``resource_state`` entry per match (the index rows carry the holders' key)."""
    resource_type, _, query_string = query.partition("?")

    def plan_for(guarded: bool) -> SearchPlan:
        plan = parse_search(resource_type, parse_qsl(query_string), registry, strict=True, default_count=100,
                            max_count=100)
        if guarded:
            plan.criteria.append(Criterion(resource_type, "_security", "token",
                                           (TokenMatch(HOLDER_SYSTEM, holder_code(facility), True),), guard=True))
        plan.snapshot = new_snapshot()
        return plan

    every = [hit.stored.id for hit in held_store.search(plan_for(False)).hits]
    held = [id for id in every if "ab"[int(id[1:]) % 2] == facility]
    assert every and held and held != every
    ids, total, statements = _search_traced(held_store, plan_for(True))
    assert (ids, total) == (held, len(held))
    counts = [s for s in statements if s.startswith("SELECT COUNT(*)") and "resource_type_updated" not in s]
    assert counts and not [s for s in counts if "resource_state" in s]


def test_a_holder_in_no_stored_set_of_holders_sees_nothing(held_store: SqliteStorage, registry: SearchRegistry) -> None:
    plan = parse_search("Observation", [("code", "2339-0")], registry, strict=True, default_count=20, max_count=100)
    plan.criteria.append(Criterion("Observation", "_security", "token",
                                   (TokenMatch(HOLDER_SYSTEM, holder_code("c"), True),), guard=True))
    plan.snapshot = new_snapshot()
    assert held_store.search(plan).hits == [] and held_store.count(plan, 10_000) == 0


def test_a_holder_in_too_many_sets_of_holders_is_checked_on_each_candidate(
        held_store: SqliteStorage, registry: SearchRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond ``MAX_HOLDER_SETS`` sets the guard reads each candidate's ``resource_state`` entry:
    slower, with the same answer."""
    monkeypatch.setattr(sqlite_search, "MAX_HOLDER_SETS", 0)
    plan = parse_search("Observation", [("status", "final")], registry, strict=True, default_count=100,
                        max_count=100)
    plan.criteria.append(Criterion("Observation", "_security", "token",
                                   (TokenMatch(HOLDER_SYSTEM, holder_code("a"), True),), guard=True))
    plan.snapshot = new_snapshot()
    ids, total, statements = _search_traced(held_store, plan)
    assert ids == [f"o{n}" for n in range(0, 40, 2)] and total == 20
    counts = [s for s in statements if s.startswith("SELECT COUNT(*)") and "resource_type_updated" not in s]
    assert counts and all("resource_state" in s for s in counts)
