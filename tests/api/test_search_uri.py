"""URI search (search.html "uri"): exact by default, ``:below`` (the URI and everything under it)
and ``:above`` (the URI and everything it is under)."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import CBAC, NDHM_PATIENT, Clinic


@pytest.mark.parametrize(("query", "expected"), [
    (f"Questionnaire?url={CBAC}", {"q-cbac"}),
    (f"Questionnaire?url={CBAC}/2024", {"q-cbac-2"}),
    (f"Questionnaire?url={CBAC}/", set()),
    (f"Questionnaire?url:below={CBAC}", {"q-cbac", "q-cbac-2"}),
    ("Questionnaire?url:below=https://ncd.example.in/fhir", {"q-cbac", "q-cbac-2"}),
    ("Questionnaire?url:below=https://ncd.example.in/fhir/Question", set()),
    (f"Questionnaire?url:above={CBAC}/2024/extra", {"q-cbac", "q-cbac-2"}),
    (f"Questionnaire?url:above={CBAC}", {"q-cbac"}),
    (f"Questionnaire?url:above={CBAC}/", {"q-cbac"}),
    (f"Questionnaire?url:above={CBAC}-extended/2024", set()),  # cbac is a string prefix, not a parent
    (f"Questionnaire?url:above={CBAC}/20", {"q-cbac"}),
    (f"Questionnaire?url={CBAC},https://other.example.org/Questionnaire/phq9", {"q-cbac", "q-phq9"}),
    ("Questionnaire?url:missing=false", {"q-cbac", "q-cbac-2", "q-phq9"}),
])
def test_uri_exact_below_and_above(clinic: Clinic, query: str, expected: set[str]) -> None:
    assert clinic.found(query) == expected


def test_profile_is_a_uri_of_every_resource(clinic: Clinic) -> None:
    patients = {"asha", "ravi", "zoe", "jose", "meena"}
    assert clinic.found(f"Patient?_profile={NDHM_PATIENT}") == patients
    assert clinic.found("Patient?_profile:below=https://nrces.in/ndhm/fhir/r4") == patients
    assert clinic.found("Observation?_profile:missing=true") >= {"bp-asha-jan", "glu-asha"}


def test_uri_modifiers_of_other_types_are_bad_requests(clinic: Clinic) -> None:
    assert clinic.status(f"Questionnaire?url:contains={CBAC}") == 400
    assert clinic.status(f"Questionnaire?url:exact={CBAC}") == 400
