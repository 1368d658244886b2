"""Quantity search across UCUM units (search.html: "a search based on canonical units"): a value with
a convertible ``http://unitsofmeasure.org`` code matches stored values in any unit of the same
dimension, with the usual prefixes and precision; anything else matches literally."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pymongo import MongoClient

from fhir_server.app import create_app
from fhir_server.search.ucum import CANONICAL_SYSTEM
from fhir_server.settings import Settings
from tests.api.ncd_clinic import UCUM, Clinic, lab, quantity
from tests.conftest import _backends, _store_url, authorize

MASSES = {"mg", "g-low", "g-high", "g-1500", "kg-1"}
TEMPERATURES = {"kelvin", "celsius", "fahrenheit"}
STORED = {
    "mg": quantity(5.4, "mg", "mg"),
    "g-low": quantity(0.00535, "g", "g"),  # 5.35 mg: the low end of 5.4 mg's precision range
    "g-high": quantity(0.00545, "g", "g"),  # 5.45 mg: just past its high end
    "g-1500": quantity(1500, "g", "g"),
    "kg-1": quantity(1, "kg", "kg"),
    "mgdl": quantity(97.3, "mg/dL", "mg/dL"),
    "mmol": quantity(5.4, "mmol/L", "mmol/L"),
    "kelvin": quantity(310, "K", "K"),
    "celsius": quantity(37.5, "°C", "Cel"),  # 310.65 K
    "fahrenheit": quantity(98.6, "°F", "[degF]"),  # 310.15 K
    "iu": quantity(5.4, "IU/L", "[IU]/L"),  # an arbitrary unit: never converted
    "meq": quantity(5.4, "mEq/L", "mEq/L"),  # not UCUM syntax: never converted
    "local": quantity(5.4, "mg", "mg", system="http://example.org/units"),
    "no-system": quantity(5.4, "mg", "mg", system=None),
}


@pytest.fixture(scope="module", params=_backends())
def units(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clinic]:
    url = _store_url(request, tmp_path_factory.mktemp("units"))
    with TestClient(create_app(Settings(store_url=url)), base_url="http://testserver") as client:
        clinic = Clinic(authorize(client))
        for label, value in STORED.items():
            clinic.add(label, lab(None, None, "2345-7", "Glucose", value))
        yield clinic


@pytest.mark.parametrize(("value", "expected"), [
    (f"5.4|{UCUM}|mg", {"mg", "g-low"}),  # [5.35, 5.45) mg
    (f"0.0054|{UCUM}|g", {"mg", "g-low"}),  # the same range written in grams
    (f"5.40|{UCUM}|mg", {"mg"}),  # [5.395, 5.405) mg
    (f"5400|{UCUM}|ug", {"mg"}),  # [5399.5, 5400.5) ug: the precision as written
    (f"gt1|{UCUM}|kg", {"g-1500"}),
    (f"ge1|{UCUM}|kg", {"g-1500", "kg-1"}),
    (f"gt1000|{UCUM}|g", {"g-1500"}),
    (f"lt5.4|{UCUM}|mg", {"g-low"}),
    (f"le5.4|{UCUM}|mg", {"g-low", "mg"}),
    (f"ne5.4|{UCUM}|mg", {"g-high", "g-1500", "kg-1"}),  # masses only: other dimensions have no mass
    (f"ap5|{UCUM}|mg", {"mg", "g-low", "g-high"}),  # 5 mg ± 10%
    (f"ap5000|{UCUM}|ug", {"mg", "g-low", "g-high"}),
    (f"sa5.4|{UCUM}|mg", {"g-high", "g-1500", "kg-1"}),
    (f"eb0.0054|{UCUM}|g", {"g-low"}),
    (f"0.0054|{UCUM}|g,5.4|{UCUM}|mmol/L", {"mg", "g-low", "mmol"}),
])
def test_masses_match_across_units_with_prefixes_and_precision(units: Clinic, value: str,
                                                               expected: set[str]) -> None:
    assert units.found(f"Observation?value-quantity={value}") == expected


@pytest.mark.parametrize(("value", "expected"), [
    (f"le37|{UCUM}|Cel", {"kelvin", "fahrenheit"}),  # 37 Cel is 310.15 K
    (f"gt37|{UCUM}|Cel", {"celsius"}),
    (f"37.5|{UCUM}|Cel", {"celsius"}),
    (f"310|{UCUM}|K", {"kelvin", "fahrenheit"}),  # [309.5, 310.5) K
    (f"98.6|{UCUM}|[degF]", {"fahrenheit"}),
    (f"ap37|{UCUM}|Cel", TEMPERATURES),  # ±3.7 Cel (10% before converting)
])
def test_temperatures_convert_with_their_offset(units: Clinic, value: str, expected: set[str]) -> None:
    assert units.found(f"Observation?value-quantity={value}") == expected


@pytest.mark.parametrize(("value", "expected"), [
    (f"5.4|{UCUM}|mmol/L", {"mmol"}),
    (f"gt0|{UCUM}|mmol/L", {"mmol"}),
    (f"gt0|{UCUM}|mg/dL", {"mgdl"}),
    (f"97.3|{UCUM}|mg/dL", {"mgdl"}),
    (f"gt0|{UCUM}|mg", MASSES),
])
def test_a_different_dimension_never_matches(units: Clinic, value: str, expected: set[str]) -> None:
    assert units.found(f"Observation?value-quantity={value}") == expected


@pytest.mark.parametrize(("value", "expected"), [
    (f"5.4|{UCUM}|mEq/L", {"meq"}),  # unparseable: literal
    (f"gt0|{UCUM}|mEq/L", {"meq"}),
    (f"5.4|{UCUM}|[IU]/L", {"iu"}),  # arbitrary: literal
    ("5.4|http://example.org/units|mg", {"local"}),  # another system: literal
    ("5.4||mg", {"mg", "local", "no-system"}),  # any system: literal
    (f"5.4|{UCUM}|mg,5.4|{UCUM}|mEq/L", {"mg", "meq"}),  # one value does not convert: all literal
    ("5.4", {"mg", "mmol", "iu", "meq", "local", "no-system"}),
    ("1.5", set()),  # 1500 g is 1.5 kg only in the canonical index, which a unit-less search never sees
    ("310.15", set()),
])
def test_other_quantities_match_literally(units: Clinic, value: str, expected: set[str]) -> None:
    assert units.found(f"Observation?value-quantity={value}") == expected


def test_missing_and_sort_use_the_values_as_written(units: Clinic) -> None:
    assert units.found("Observation?value-quantity:missing=false") == set(STORED)
    assert units.found("Observation?value-quantity:missing=true") == set()
    assert units.ordered(f"Observation?value-quantity=gt0|{UCUM}|kg&_sort=value-quantity") == [
        "g-low", "g-high", "kg-1", "mg", "g-1500"]
    assert units.ordered(f"Observation?value-quantity=gt0|{UCUM}|kg&_sort=-value-quantity") == [
        "g-1500", "mg", "kg-1", "g-high", "g-low"]


def test_the_canonical_index_is_not_a_search_parameter(units: Clinic) -> None:
    assert units.status("Observation?value-quantity:canonical=1.5") == 400
    statement = units.client.get("/metadata").json()
    names = {p["name"] for r in statement["rest"][0]["resource"] for p in r.get("searchParam", ())}
    assert "value-quantity" in names
    assert not any(":" in name for name in names)  # no derived index (``value-quantity:canonical``)


def _forget_canonical_quantities(url: str) -> None:
    """Make the store look written before canonical units: no canonical values, no migration mark."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        deleted = conn.execute("DELETE FROM idx_quantity WHERE system = ?", (CANONICAL_SYSTEM,)).rowcount
        assert deleted == 2  # two quantities, in value-quantity (combo-value-quantity reads those rows)
        conn.execute("PRAGMA user_version = 0")
        conn.commit()
        conn.close()
        return
    client: MongoClient = MongoClient(url)
    db = client.get_default_database()
    assert db.resources.update_many({}, {"$pull": {"qty": {"s": CANONICAL_SYSTEM}}}).modified_count == 2
    db.migrations.delete_many({})
    client.close()


def test_a_store_written_before_canonical_units_is_indexed_when_opened(store_url: str) -> None:
    def search(client: TestClient, value: str) -> set[str]:
        bundle = client.get(f"/Observation?value-quantity={value}").json()
        return {e["resource"]["valueQuantity"]["unit"] for e in bundle.get("entry", ())}

    with TestClient(create_app(Settings(store_url=store_url)), base_url="http://testserver") as client:
        authorize(client)
        for value in (quantity(5.4, "mg", "mg"), quantity(1500, "g", "g"), quantity(5.4, "mEq/L", "mEq/L")):
            assert client.post("/Observation", json=lab(None, None, "2345-7", "Glucose", value)).status_code == 201
        assert search(client, f"gt1|{UCUM}|mg") == {"mg", "g"}
    _forget_canonical_quantities(store_url)
    with TestClient(create_app(Settings(store_url=store_url)), base_url="http://testserver") as client:
        authorize(client)
        assert search(client, f"gt1|{UCUM}|mg") == {"mg", "g"}
        assert search(client, f"0.0054|{UCUM}|g") == {"mg"}
        assert search(client, f"5.4|{UCUM}|mEq/L") == {"mEq/L"}
        assert client.post("/Observation", json=lab(None, None, "2345-7", "Glucose",
                                                    quantity(2, "kg", "kg"))).status_code == 201
        assert search(client, f"gt1|{UCUM}|kg") == {"g", "kg"}
    with TestClient(create_app(Settings(store_url=store_url)), base_url="http://testserver") as client:
        authorize(client)  # opened again: converted once, nothing added twice
        assert search(client, f"gt1|{UCUM}|mg") == {"mg", "g", "kg"}
        bundle = client.get(f"/Observation?value-quantity=gt1|{UCUM}|mg&_total=accurate").json()
        assert bundle["total"] == 3
