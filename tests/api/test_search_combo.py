"""The Observation ``combo-*`` parameters (R4): each searches the observation's own code or value and
those of its components together. SQLite keeps no index rows of their own for them (their values
are the union of two other parameters': ``sqlite_schema.stored_names``), so every form of search on
them is checked here on both backends, against what the observations hold (and, on SQLite, that
neither they nor ``_lastUpdated``, which the resource table serves, have rows)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.api.ncd_clinic import DIASTOLIC, LOINC, SYSTOLIC, UCUM, Clinic, coding, concept, quantity
from tests.conftest import _backends, _store_url, authorize

BP_PANEL, GLUCOSE, SMOKING, NEVER = "85354-9", "2345-7", "72166-2", "266919005"
SNOMED = "http://snomed.info/sct"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"


def _observation(code: str, display: str, **elements: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": concept(LOINC, code, display), **elements}


def _component(code: str, display: str, **elements: Any) -> dict[str, Any]:
    return {"code": concept(LOINC, code, display), **elements}


OBSERVATIONS = {
    "bp": _observation(BP_PANEL, "Blood pressure panel", component=[
        _component(SYSTOLIC, "Systolic blood pressure", valueQuantity=quantity(150, "mmHg", "mm[Hg]")),
        _component(DIASTOLIC, "Diastolic blood pressure", valueQuantity=quantity(95, "mmHg", "mm[Hg]"))]),
    "bp-partial": _observation(BP_PANEL, "Blood pressure panel", component=[
        _component(SYSTOLIC, "Systolic blood pressure", valueQuantity=quantity(118, "mmHg", "mm[Hg]")),
        _component(DIASTOLIC, "Diastolic blood pressure",
                   dataAbsentReason=concept(ABSENT, "asked-declined", "Asked But Declined"))]),
    "glucose": _observation(GLUCOSE, "Glucose", valueQuantity=quantity(0.0095, "g/L", "g/L")),  # 9.5 mg/L
    "glucose-absent": _observation(GLUCOSE, "Glucose", dataAbsentReason=concept(ABSENT, "error", "Error")),
    "smoking": _observation(SMOKING, "Tobacco smoking status",
                            valueCodeableConcept=concept(SNOMED, NEVER, "Never smoked tobacco")),
    "panel": _observation("55284-4", "Blood pressure systolic and diastolic", component=[
        _component("8867-4", "Heart rate", valueQuantity=quantity(72, "/min", "/min")),
        _component(SMOKING, "Tobacco smoking status", valueCodeableConcept=concept(SNOMED, NEVER, "Never smoked"))]),
}


@pytest.fixture(scope="module", params=_backends())
def combos(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Clinic, str]]:
    url = _store_url(request, tmp_path_factory.mktemp("combo"))
    with TestClient(create_app(Settings(store_url=url)), base_url="http://testserver") as client:
        clinic = Clinic(authorize(client))
        for label, observation in OBSERVATIONS.items():
            clinic.add(label, observation)
        yield clinic, url


@pytest.mark.parametrize(("query", "expected"), [
    # the observation's own code or a component's
    (f"combo-code={SYSTOLIC}", {"bp", "bp-partial"}),
    (f"combo-code={LOINC}|{BP_PANEL}", {"bp", "bp-partial"}),
    (f"combo-code={SMOKING}", {"smoking", "panel"}),
    (f"combo-code={SMOKING},{GLUCOSE}", {"smoking", "panel", "glucose", "glucose-absent"}),
    (f"combo-code={SNOMED}|{SMOKING}", set()),
    ("combo-code:text=diastolic", {"bp", "bp-partial"}),
    (f"combo-code:not={SYSTOLIC}", {"glucose", "glucose-absent", "smoking", "panel"}),
    (f"combo-code={SMOKING}&combo-code={GLUCOSE}", set()),
    # values
    (f"combo-value-quantity=gt140|{UCUM}|mm[Hg]", {"bp"}),
    ("combo-value-quantity=72", {"panel"}),
    (f"combo-value-quantity=9.5|{UCUM}|mg/L", {"glucose"}),  # canonical units: stored as 0.0095 g/L
    (f"combo-value-quantity=lt120|{UCUM}|mm[Hg]", {"bp-partial", "bp"}),  # the diastolic 95 is below 120
    (f"combo-value-concept={SNOMED}|{NEVER}", {"smoking", "panel"}),
    ("combo-value-concept:text=never smoked", {"smoking", "panel"}),
    ("combo-data-absent-reason=asked-declined", {"bp-partial"}),
    ("combo-data-absent-reason=asked-declined,error", {"bp-partial", "glucose-absent"}),
    # code and value from the same element only
    (f"combo-code-value-quantity={SYSTOLIC}$gt140", {"bp"}),
    (f"combo-code-value-quantity={DIASTOLIC}$gt140", set()),  # 150 belongs to the systolic component
    (f"combo-code-value-quantity={GLUCOSE}$gt0.009", {"glucose"}),
    (f"combo-code-value-quantity={SYSTOLIC}$lt200,{GLUCOSE}$gt1", {"bp", "bp-partial"}),
    (f"combo-code-value-concept={SMOKING}${SNOMED}|{NEVER}", {"smoking", "panel"}),
    (f"combo-code-value-concept={GLUCOSE}${SNOMED}|{NEVER}", set()),
    # presence
    ("combo-value-quantity:missing=true", {"glucose-absent", "smoking"}),
    ("combo-value-quantity:missing=false", {"bp", "bp-partial", "glucose", "panel"}),
    ("combo-data-absent-reason:missing=false", {"bp-partial", "glucose-absent"}),
    ("combo-code-value-concept:missing=false", {"smoking", "panel"}),
    # two combo criteria together
    (f"combo-code={SYSTOLIC}&combo-value-quantity=lt100|{UCUM}|mm[Hg]", {"bp"}),
])
def test_combo_parameters(combos: tuple[Clinic, str], query: str, expected: set[str]) -> None:
    clinic, _ = combos
    assert clinic.found(f"Observation?{query}") == expected


def test_sort_by_a_combo_value_takes_the_lowest_of_the_observation_and_its_components(
        combos: tuple[Clinic, str]) -> None:
    clinic, _ = combos
    # lowest values: glucose 0.0095 g/L, panel 72 /min, bp-partial 118 and bp 95 mm[Hg]
    assert clinic.ordered("Observation?combo-value-quantity:missing=false&_sort=combo-value-quantity") == [
        "glucose", "panel", "bp", "bp-partial"]


def test_a_combo_search_finds_each_observation_once_across_pages(combos: tuple[Clinic, str]) -> None:
    clinic, _ = combos
    first = clinic.search(f"Observation?combo-code={LOINC}|&_count=2&_total=accurate")
    assert first["total"] == len(OBSERVATIONS)
    seen = [e["resource"]["id"] for e in first["entry"]]
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    while next_url:
        page = clinic.search(next_url.removeprefix("http://testserver"))
        seen += [e["resource"]["id"] for e in page.get("entry", ())]
        next_url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted(clinic.id(label) for label in OBSERVATIONS)


def test_sqlite_keeps_no_rows_for_combo_parameters_or_the_last_update(combos: tuple[Clinic, str]) -> None:
    clinic, url = combos
    if not url.startswith("sqlite:///"):
        pytest.skip("the row layout is SQLite's")
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        names = {name for table in ("idx_token", "idx_quantity", "idx_date") for (name,) in conn.execute(
            f"SELECT p.name FROM param p WHERE EXISTS (SELECT 1 FROM {table} t WHERE t.pkey = p.id)")}
    finally:
        conn.close()
    assert {"Observation.code", "Observation.component-code", "Observation.value-quantity"} <= names
    assert not {name for name in names if ".combo-" in name or name.endswith("._lastUpdated")}
    assert clinic.found("Observation?_lastUpdated=gt2020") == set(OBSERVATIONS)  # the resource table serves it
