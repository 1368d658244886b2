"""``_sort`` on several keys, ``-`` for descending, for string, token, date, number, quantity and
reference parameters; missing values last in either direction; a stable tie-breaker."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import BP_PANEL, HBA1C, Clinic


@pytest.mark.parametrize(("query", "expected"), [
    ("Patient?_sort=birthdate", ["jose", "zoe", "ravi", "asha", "meena"]),
    ("Patient?_sort=-birthdate", ["meena", "asha", "ravi", "zoe", "jose"]),
    ("Patient?_sort=family", ["zoe", "jose", "ravi", "meena", "asha"]),  # accent- and case-folded
    ("Patient?_sort=-family", ["asha", "meena", "ravi", "jose", "zoe"]),
    ("Patient?_sort=gender,-birthdate", ["meena", "asha", "zoe", "ravi", "jose"]),
    ("Patient?_sort=-gender,family", ["jose", "ravi", "zoe", "meena", "asha"]),
    ("RiskAssessment?_sort=-probability", ["risk-zoe", "risk-asha", "risk-ravi"]),
    (f"Observation?code={HBA1C}&_sort=value-quantity", ["a1c-meena", "a1c-jose", "a1c-asha"]),
    (f"Observation?code={HBA1C}&_sort=-date", ["a1c-meena", "a1c-asha", "a1c-jose"]),
    (f"Observation?code={BP_PANEL}&_sort=date",
     ["bp-zoe", "bp-ravi", "bp-asha-jan", "bp-external", "bp-asha-feb", "bp-meena"]),
    (f"Observation?code={BP_PANEL}&_sort=status,-date",
     ["bp-zoe", "bp-asha-feb", "bp-external", "bp-asha-jan", "bp-ravi", "bp-meena"]),
    ("Questionnaire?_sort=-url", ["q-phq9", "q-cbac-2", "q-cbac"]),
])
def test_sort_orders(clinic: Clinic, query: str, expected: list[str]) -> None:
    assert clinic.ordered(query) == expected


def test_missing_values_sort_last_in_either_direction(clinic: Clinic) -> None:
    assert clinic.ordered("Patient?_sort=address-city")[-2:] in (["jose", "meena"], ["meena", "jose"])
    assert clinic.ordered("Patient?_sort=-address-city")[-2:] in (["jose", "meena"], ["meena", "jose"])
    assert clinic.ordered("Patient?_sort=-address-city")[2] == "zoe"
    assert clinic.ordered("Patient?_sort=address-city")[0] == "zoe"


def test_ties_keep_one_stable_order(clinic: Clinic) -> None:
    first = clinic.ordered("Condition?_sort=code")
    assert first == clinic.ordered("Condition?_sort=code")
    assert set(first[:2]) == {"htn-asha", "htn-ravi"} and set(first[2:]) == {"dm-asha", "dm-zoe"}


def test_sort_by_reference_and_by_the_common_parameters(clinic: Clinic) -> None:
    by_subject = clinic.ordered("Condition?_sort=subject,code")
    ids = [clinic.id(label.split("-")[1]) for label in by_subject]
    assert ids == sorted(ids)
    assert clinic.ordered("Organization?_sort=_id") == sorted(["org-phc", "org-chc"], key=clinic.id)
    assert clinic.ordered("Practitioner?_sort=-_lastUpdated") == ["nurse-devi", "dr-kumar"]


@pytest.mark.parametrize("value", ["nickname", "-", "component-code-value-quantity", "family,,-", "--family"])
def test_bad_sort_keys_are_bad_requests(clinic: Clinic, value: str) -> None:
    assert clinic.status(f"Observation?_sort={value}") == 400
