"""Reference search (search.html "reference"): ``id``, ``Type/id``, absolute URLs (this server's and
others'), the ``:[type]`` modifier, ``:identifier`` and ``:missing``."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import DOCTOR_ID, EXTERNAL_PATIENT, HEALTH_ID, Clinic

ASHA_OBSERVATIONS = {"bp-asha-jan", "bp-asha-feb", "glu-asha", "a1c-asha"}


def test_a_reference_by_type_and_id_by_id_alone_and_by_this_servers_url(clinic: Clinic) -> None:
    asha = clinic.ref("asha")
    assert clinic.found(f"Observation?subject={asha}") == ASHA_OBSERVATIONS
    assert clinic.found(f"Observation?subject={clinic.id('asha')}") == ASHA_OBSERVATIONS
    assert clinic.found(f"Observation?subject=http://testserver/{asha}") == ASHA_OBSERVATIONS
    assert clinic.found(f"Observation?patient={asha}") == ASHA_OBSERVATIONS


def test_a_stored_absolute_reference_to_this_server_matches_a_relative_search(clinic: Clinic) -> None:
    ravi = clinic.ref("ravi")
    assert clinic.found(f"Observation?subject={ravi}") == {"bp-ravi", "glu-ravi"}
    assert clinic.found(f"Observation?subject=http://testserver/{ravi}") == {"bp-ravi", "glu-ravi"}


def test_a_reference_to_another_server_matches_by_its_url(clinic: Clinic) -> None:
    assert clinic.found(f"Observation?subject={EXTERNAL_PATIENT}") == {"bp-external"}
    assert clinic.found("Observation?subject=Patient/77") == set()


def test_the_type_modifier_restricts_the_target_type(clinic: Clinic) -> None:
    assert clinic.found(f"Observation?subject:Patient={clinic.id('asha')}") == ASHA_OBSERVATIONS
    assert clinic.found(f"Observation?subject:Group={clinic.id('asha')}") == set()
    assert clinic.found(f"Observation?performer:Practitioner={clinic.id('nurse-devi')}") == {"bp-asha-feb"}
    assert clinic.status(f"Observation?subject:Patient={clinic.ref('dr-kumar')}") == 400


def test_commas_or_references(clinic: Clinic) -> None:
    assert clinic.found(f"Condition?subject={clinic.ref('ravi')},{clinic.ref('zoe')}") == {"htn-ravi", "dm-zoe"}
    assert clinic.found(f"Encounter?participant={clinic.ref('dr-kumar')}") == {"enc-asha-jan"}


def test_identifier_matches_the_logical_identifier_of_a_reference(clinic: Clinic) -> None:
    assert clinic.found(f"Observation?performer:identifier={DOCTOR_ID}|71-1234-5678-9012") == {"glu-ravi"}
    assert clinic.found("Observation?performer:identifier=71-1234-5678-9012") == {"glu-ravi"}
    assert clinic.found(f"Observation?subject:identifier={HEALTH_ID}|91-5006-4247-3341") == set()


def test_missing_on_references(clinic: Clinic) -> None:
    assert clinic.found("Patient?organization:missing=true") == {"jose", "meena"}
    assert clinic.found("Observation?encounter:missing=false") == {"bp-asha-jan", "bp-asha-feb", "bp-ravi"}
    assert clinic.found("Observation?performer:missing=false") == {"bp-asha-jan", "bp-asha-feb"}


@pytest.mark.parametrize("query", ["Observation?subject=a/b/c", "Observation?subject=Medication/1",
                                   "Observation?subject:Spaceship=1", "Observation?subject:exact=1"])
def test_unreadable_references_and_modifiers_are_bad_requests(clinic: Clinic, query: str) -> None:
    assert clinic.status(query) == 400
