"""Composite search (search.html "composite"): NCD blood-pressure and lab searches where the code and
the value must come from the same component (or the same observation)."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import DIASTOLIC, GLUCOSE, LOINC, SYSTOLIC, UCUM, Clinic

COMPONENT = "Observation?component-code-value-quantity="


@pytest.mark.parametrize(("value", "expected"), [
    (f"{LOINC}|{SYSTOLIC}$ge140", {"bp-asha-jan", "bp-zoe", "bp-external"}),
    (f"{SYSTOLIC}$ge140", {"bp-asha-jan", "bp-zoe", "bp-external"}),
    (f"{LOINC}|{SYSTOLIC}$lt120", {"bp-meena"}),
    (f"{LOINC}|{SYSTOLIC}$lt100", set()),  # the diastolic values below 100 belong to another component
    (f"{LOINC}|{DIASTOLIC}$ge100", {"bp-zoe"}),
    (f"{SYSTOLIC}$150|{UCUM}|mm[Hg]", {"bp-asha-jan"}),
    (f"{SYSTOLIC}$150||mm[Hg]", {"bp-asha-jan"}),
    (f"{SYSTOLIC}$150||mmol/L", set()),
    (f"{SYSTOLIC}$gt140,{DIASTOLIC}$ge100", {"bp-asha-jan", "bp-zoe", "bp-external"}),
])
def test_component_code_value_quantity(clinic: Clinic, value: str, expected: set[str]) -> None:
    assert clinic.found(COMPONENT + value) == expected


def test_stage_two_hypertension_needs_both_components(clinic: Clinic) -> None:
    query = f"{COMPONENT}{LOINC}|{SYSTOLIC}$ge140&component-code-value-quantity={LOINC}|{DIASTOLIC}$gt90"
    assert clinic.found(query) == {"bp-asha-jan", "bp-zoe"}
    assert clinic.found(query + f"&subject={clinic.ref('asha')}") == {"bp-asha-jan"}


def test_code_value_quantity_on_the_observation_itself(clinic: Clinic) -> None:
    assert clinic.found(f"Observation?code-value-quantity={LOINC}|{GLUCOSE}$gt125") == {"glu-asha"}
    assert clinic.found(f"Observation?code-value-quantity={GLUCOSE}$gt5") == {"glu-asha", "glu-ravi", "glu-zoe"}
    assert clinic.found(f"Observation?code-value-quantity={GLUCOSE}$gt5||mg/dL") == {"glu-asha", "glu-ravi"}
    assert clinic.found(f"Observation?code-value-quantity={SYSTOLIC}$gt100") == set()


@pytest.mark.parametrize("value", [SYSTOLIC, f"{SYSTOLIC}$high", f"{SYSTOLIC}$1$2"])
def test_composites_with_the_wrong_parts_are_bad_requests(clinic: Clinic, value: str) -> None:
    assert clinic.status(COMPONENT + value) == 400
