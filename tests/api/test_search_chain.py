"""Chained parameters (``subject:Patient.name=...``, several levels, without a type across every
target type that has the parameter) and reverse chaining (``_has:Observation:subject:code=...``,
nested)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.ncd_clinic import BP_PANEL, HBA1C, HEALTH_ID, HYPERTENSION, MRN, Clinic

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


@pytest.fixture
def subjects(client: TestClient) -> Clinic:
    """Observations about a Patient, a Location, a Group and a Device (and none), some of them sharing
    a name, an identifier or the Organization they belong to."""
    c = Clinic(client)
    c.add("org-phc", {"resourceType": "Organization", "name": "Primary Health Centre"})
    c.add("org-chc", {"resourceType": "Organization", "name": "Community Health Centre"})
    c.add("patient", {"resourceType": "Patient", "name": [{"family": "Sharma", "given": ["Asha"]}],
                      "identifier": [{"system": MRN, "value": "1001"}],
                      "managingOrganization": {"reference": c.ref("org-phc")}})
    c.add("other-patient", {"resourceType": "Patient", "name": [{"family": "Kumar"}],
                            "identifier": [{"system": MRN, "value": "1002"}],
                            "managingOrganization": {"reference": c.ref("org-chc")}})
    c.add("ward", {"resourceType": "Location", "name": "Sharma Ward", "identifier": [{"system": MRN, "value": "1001"}],
                   "managingOrganization": {"reference": c.ref("org-phc")}})
    c.add("cohort", {"resourceType": "Group", "type": "person", "actual": True, "name": "Sharma family",
                     "identifier": [{"system": MRN, "value": "1001"}]})
    c.add("device", {"resourceType": "Device", "identifier": [{"system": MRN, "value": "1003"}],
                     "owner": {"reference": c.ref("org-chc")}})
    for label, subject, status in (("obs-patient", "patient", "final"), ("obs-other-patient", "other-patient", "final"),
                                   ("obs-ward", "ward", "amended"), ("obs-cohort", "cohort", "final"),
                                   ("obs-device", "device", "final")):
        c.add(label, {"resourceType": "Observation", "status": status, "code": {"text": "reading"},
                      "subject": {"reference": c.ref(subject)}})
    c.add("obs-nobody", {"resourceType": "Observation", "status": "final", "code": {"text": "reading"}})
    return c


@pytest.mark.parametrize(("query", "expected"), [
    # Group has no name parameter: a Patient or a Location with the name
    ("Observation?subject.name=sharma", {"obs-patient", "obs-ward"}),
    ("Observation?subject.name=kumar,sharma", {"obs-patient", "obs-other-patient", "obs-ward"}),
    ("Observation?subject.name:exact=Sharma Ward", {"obs-ward"}),
    (f"Observation?subject.identifier={MRN}|1001", {"obs-patient", "obs-ward", "obs-cohort"}),
    (f"Observation?subject.identifier={MRN}|1003", {"obs-device"}),
    (f"Observation?subject.identifier={MRN}|1001,{MRN}|1003", {"obs-patient", "obs-ward", "obs-cohort", "obs-device"}),
    ("Observation?subject.name=nobody", set()),
    # the Patient, the Location and the Device each have an organization parameter
    ("Observation?subject.organization.name=primary", {"obs-patient", "obs-ward"}),
    ("Observation?subject.organization.name=community", {"obs-other-patient", "obs-device"}),
    ("Observation?subject:Patient.name=sharma", {"obs-patient"}),
    ("Observation?subject:Location.organization.name=primary", {"obs-ward"}),
])
def test_an_untyped_chain_searches_every_target_type_that_has_the_parameter(subjects: Clinic, query: str,
                                                                             expected: set[str]) -> None:
    assert subjects.found(query) == expected


def test_untyped_chains_combine_with_other_criteria(subjects: Clinic) -> None:
    assert subjects.found("Observation?subject.name=sharma&status:not=final") == {"obs-ward"}
    assert subjects.found("Observation?subject.name=sharma&status=final") == {"obs-patient"}
    assert subjects.found(f"Observation?subject.identifier={MRN}|1001&subject.name=sharma") == {
        "obs-patient", "obs-ward"}
    assert subjects.found(f"Observation?subject.identifier={MRN}|1001&subject:Group.identifier={MRN}|1001") == {
        "obs-cohort"}
    assert subjects.found("Observation?subject.name=sharma&subject.organization.name=primary&_sort=status") == {
        "obs-patient", "obs-ward"}
    assert subjects.found(f"Patient?_has:Observation:subject:subject.identifier={MRN}|1001") == {"patient"}


def test_an_untyped_chain_no_target_of_which_has_the_parameter_is_unknown(client: TestClient) -> None:
    response = client.get("Observation?subject.nickname=x", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert "no target of subject has a parameter 'nickname'" in response.json()["issue"][0]["diagnostics"]
    bundle = client.get("Observation?subject.nickname=x").json()
    assert [e["resource"]["resourceType"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"] == [
        "OperationOutcome"]


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
