"""UCUM codes to canonical units (``search.ucum``) and the derived index values they give."""

from __future__ import annotations

import pytest

from fhir_server.search.extract import IndexExtractor
from fhir_server.search.index_values import QuantityValue
from fhir_server.search.registry import SearchRegistry
from fhir_server.search.ucum import CANONICAL_SYSTEM, UCUM_SYSTEM, conversion


@pytest.mark.parametrize(("code", "value", "canonical", "unit"), [
    ("mg", 5.35, 5.35e-6, "kilogram"),
    ("g", 0.00535, 5.35e-6, "kilogram"),  # the same number as 5.35 mg, not a float's neighbour of it
    ("kg", 1, 1.0, "kilogram"),
    ("mmol/L", 5.4, 5.4, "meter-3.mole"),
    ("mg/dL", 97.3, 0.973, "kilogram.meter-3"),
    ("Cel", 37, 310.15, "kelvin"),
    ("[degF]", 98.6, 310.15, "kelvin"),
    ("K", 310, 310.0, "kelvin"),
    ("%", 50, 0.5, "1"),
    ("/min", 60, 1.0, "second-1"),
])
def test_convertible_codes_give_the_value_in_base_units(code: str, value: float, canonical: float,
                                                       unit: str) -> None:
    converted = conversion(code)
    assert converted is not None
    assert (converted.apply(value), converted.unit) == (canonical, unit)


@pytest.mark.parametrize("code", ["mEq/L", "bogus!!", "[IU]/L", "[arb'U]", "10*3.[CFU]/mL", "dB", "B", "Np",
                                  "Cel/h"])
def test_unparseable_arbitrary_and_logarithmic_codes_do_not_convert(code: str) -> None:
    assert conversion(code) is None


def test_a_ucum_quantity_is_indexed_as_written_and_in_canonical_units() -> None:
    extractor = IndexExtractor(SearchRegistry.load())
    values = extractor.extract({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                "valueQuantity": {"value": 1500, "unit": "g", "system": UCUM_SYSTEM, "code": "g"}})
    quantities = {v for v in values if isinstance(v, QuantityValue) and v.param.startswith("value-quantity")}
    assert quantities == {QuantityValue("value-quantity", 1500.0, UCUM_SYSTEM, "g", "g"),
                          QuantityValue("value-quantity:canonical", 1.5, CANONICAL_SYSTEM, "kilogram")}


@pytest.mark.parametrize("quantity", [{"value": 5.4, "system": "http://example.org/units", "code": "mg"},
                                      {"value": 5.4, "code": "mg"}, {"value": 5.4, "system": UCUM_SYSTEM},
                                      {"value": 5.4, "system": UCUM_SYSTEM, "code": "mEq/L"}])
def test_other_quantities_are_indexed_only_as_written(quantity: dict[str, object]) -> None:
    extractor = IndexExtractor(SearchRegistry.load())
    values = extractor.extract({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                "valueQuantity": quantity})
    assert not [v for v in values if isinstance(v, QuantityValue) and v.param.endswith(":canonical")]
