"""Chained parameters (``subject:Patient.name=...``, several levels) and reverse chaining
(``_has:Observation:subject:code=...``, nested)."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import BP_PANEL, HBA1C, HEALTH_ID, HYPERTENSION, Clinic

ASHA_OBSERVATIONS = {"bp-asha-jan", "bp-asha-feb", "glu-asha", "a1c-asha"}


@pytest.mark.parametrize(("query", "expected"), [
    ("Observation?subject:Patient.name=sharma", ASHA_OBSERVATIONS),
    ("Observation?patient.name=sharma", ASHA_OBSERVATIONS),
    (f"Observation?subject:Patient.identifier={HEALTH_ID}|91-5006-4247-3341", ASHA_OBSERVATIONS),
    ("Observation?subject:Patient.gender=male", {"bp-ravi", "glu-ravi", "a1c-jose"}),
    (f"Observation?subject:Patient.birthdate=lt1970&code={BP_PANEL}", {"bp-zoe"}),
    ("Condition?subject:Patient.name=zoë", {"dm-zoe"}),
    ("Encounter?participant:Practitioner.name=kumar", {"enc-asha-jan"}),
    ("MedicationRequest?requester:Practitioner.identifier=71-1234-5678-9012", {"amlo-asha"}),
])
def test_chains_follow_a_reference_to_the_resources_it_points_at(clinic: Clinic, query: str,
                                                                  expected: set[str]) -> None:
    assert clinic.found(query) == expected


def test_chains_of_several_levels(clinic: Clinic) -> None:
    phc = {"bp-asha-jan", "bp-asha-feb", "glu-asha", "a1c-asha", "bp-ravi", "glu-ravi"}
    assert clinic.found("Observation?subject:Patient.organization.name=primary") == phc
    assert clinic.found("Observation?subject:Patient.general-practitioner:Practitioner.name=kumar") == phc
    assert clinic.found("MedicationRequest?encounter.subject:Patient.organization.name=primary") == {"amlo-asha"}
    assert clinic.found("Observation?encounter.participant:Practitioner.family=kumar") == {"bp-asha-jan"}
    assert clinic.found("Observation?subject:Patient.organization.active=false") == {"bp-zoe", "glu-zoe"}


def test_chained_criteria_combine_with_others(clinic: Clinic) -> None:
    assert clinic.found(f"Observation?subject:Patient.name=sharma&code={HBA1C}") == {"a1c-asha"}
    assert clinic.found("Observation?subject:Patient.name=sharma,kumar&code=1558-6") == {"glu-asha", "glu-ravi"}
    assert clinic.found("Observation?subject:Patient.name=sharma&subject:Patient.name=kumar") == set()


def test_an_ambiguous_chain_asks_for_the_type(clinic: Clinic) -> None:
    response = clinic.client.get("Observation?subject.name=sharma")
    assert response.status_code == 400
    assert "may refer to Location, Patient" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("query", "expected"), [
    (f"Patient?_has:Observation:subject:code={HBA1C}", {"asha", "jose", "meena"}),
    (f"Patient?_has:Condition:subject:code={HYPERTENSION}", {"asha", "ravi"}),
    (f"Patient?_has:Condition:subject:code={HYPERTENSION}&_has:Observation:subject:code={HBA1C}", {"asha"}),
    ("Patient?_has:MedicationRequest:subject:status=active", {"asha"}),
    ("Practitioner?_has:Observation:performer:code=85354-9", {"dr-kumar", "nurse-devi"}),
    ("Encounter?_has:Observation:encounter:component-code-value-quantity=8480-6$ge140", {"enc-asha-jan"}),
])
def test_has_selects_resources_referenced_by_matching_resources(clinic: Clinic, query: str,
                                                                 expected: set[str]) -> None:
    assert clinic.found(query) == expected


def test_nested_has_and_has_with_a_chain(clinic: Clinic) -> None:
    assert clinic.found(f"Patient?_has:Encounter:subject:_has:Observation:encounter:code={BP_PANEL}") == {
        "asha", "ravi"}
    assert clinic.found("Organization?_has:Patient:organization:_has:Condition:subject:code=44054006") == {
        "org-phc", "org-chc"}
    assert clinic.found("Patient?_has:Observation:subject:performer:Practitioner.name=devi") == {"asha"}


@pytest.mark.parametrize("query", [
    "Patient?_has:Observation", "Patient?_has:Observation:subject", "Patient?_has:Spaceship:subject:code=1",
    "Patient?_has:Observation:code:code=1", "Observation?code.name=x", "Observation?subject:Spaceship.name=x",
])
def test_malformed_chains_are_bad_requests(clinic: Clinic, query: str) -> None:
    assert clinic.status(query) == 400
