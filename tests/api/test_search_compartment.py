"""Compartment search (``GET /Patient/123/Observation?...``): the resources of a type that the
official CompartmentDefinition links to the patient, narrowed by any other search criteria."""

from __future__ import annotations

from tests.api.ncd_clinic import BP_PANEL, HBA1C, Clinic


def test_a_patients_observations_through_subject_and_performer(clinic: Clinic) -> None:
    asha = clinic.ref("asha")
    assert clinic.found(f"{asha}/Observation") == {"bp-asha-jan", "bp-asha-feb", "glu-asha", "a1c-asha"}
    assert clinic.found(f"{asha}/Observation?code={BP_PANEL}") == {"bp-asha-jan", "bp-asha-feb"}
    assert clinic.found(f"{asha}/Observation?code={HBA1C}&date=2026") == {"a1c-asha"}
    assert clinic.found(f"{clinic.ref('ravi')}/Observation") == {"bp-ravi", "glu-ravi"}  # an absolute reference


def test_every_type_in_the_compartment(clinic: Clinic) -> None:
    asha = clinic.ref("asha")
    assert clinic.found(f"{asha}/Condition") == {"htn-asha", "dm-asha"}
    assert clinic.found(f"{asha}/Encounter") == {"enc-asha-jan", "enc-asha-feb"}
    assert clinic.found(f"{asha}/MedicationRequest?status=active") == {"amlo-asha", "met-asha"}
    assert clinic.found(f"{asha}/RiskAssessment") == {"risk-asha"}
    assert clinic.found(f"{clinic.ref('zoe')}/MedicationRequest") == set()


def test_other_compartments(clinic: Clinic) -> None:
    assert clinic.found(f"{clinic.ref('enc-asha-jan')}/Observation") == {"bp-asha-jan"}
    assert clinic.found(f"{clinic.ref('dr-kumar')}/Condition") == {"htn-asha"}


def test_links_keep_the_compartment_path(clinic: Clinic) -> None:
    bundle = clinic.search(f"{clinic.ref('asha')}/Observation?_count=2")
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["self"].startswith(f"http://testserver/{clinic.ref('asha')}/Observation?")
    assert links["next"].startswith(f"http://testserver/{clinic.ref('asha')}/Observation?")
    assert bundle["total"] == 4


def test_a_type_outside_the_compartment_or_an_unknown_type_is_refused(clinic: Clinic) -> None:
    asha = clinic.ref("asha")
    assert clinic.status(f"{asha}/Practitioner") == 400
    assert clinic.status(f"{asha}/Spaceship") == 404
    assert clinic.status(f"Spaceship/1/Observation") == 404
    assert clinic.found("Patient/nobody/Observation") == set()
