"""Enrollment rows → Enrollee → FHIR resources with ABDM identifiers (pure functions)."""

from __future__ import annotations

from datetime import date

import pytest

from consent.health_id import HealthId
from mappings.abdm import HEALTH_ID_SYSTEM, PRACTITIONER_SYSTEM, type_code
from mappings.enrollment import (
    RowError,
    merge_person,
    normalise_mobile,
    parse_row,
    patient_resource,
    practitioner_resource,
    practitioner_role,
)

TODAY = date(2025, 3, 1)
ROW = {"name": " Asha   Sharma ", "gender": "F", "birth_date": "5/9/1980", "mobile": "098765 43210"}


@pytest.mark.parametrize("text", ["9876543210", "+91 98765 43210", "919876543210", "09876543210", "98765-43210"])
def test_mobile_forms(text: str) -> None:
    assert normalise_mobile(text) == "+919876543210"


@pytest.mark.parametrize("text", ["5876543210", "987654321", "+1 202 555 0100", "abc"])
def test_bad_mobiles(text: str) -> None:
    with pytest.raises(RowError, match="mobile"):
        normalise_mobile(text)


def test_row_is_normalised() -> None:
    enrollee, warnings = parse_row(ROW, today=TODAY)
    assert (enrollee.role, enrollee.name, enrollee.gender, enrollee.birth_date, enrollee.mobile) == (
        "patient", "Asha Sharma", "female", "1980-09-05", "+919876543210")
    assert warnings == []


def test_enrollment_key_ignores_case_and_spacing_but_not_the_facility() -> None:
    a, _ = parse_row(ROW, today=TODAY)
    b, _ = parse_row({**ROW, "name": "asha sharma"}, today=TODAY)
    assert a.enrollment_key("org-1") == b.enrollment_key("org-1") != a.enrollment_key("org-2")
    with_ext, _ = parse_row({**ROW, "external_id": "NCD-1"}, today=TODAY)
    renamed, _ = parse_row({**ROW, "external_id": "NCD-1", "name": "Asha Verma"}, today=TODAY)
    assert with_ext.enrollment_key("org-1") == renamed.enrollment_key("org-1")


def test_patient_resource_uses_abdm_systems_and_type_codes() -> None:
    enrollee, _ = parse_row({**ROW, "address": "asha.sharma@abdm"}, today=TODAY)
    patient = patient_resource(enrollee, HealthId.parse("91500642473341"), "org-1")
    hin, abha = patient["identifier"]
    assert (type_code(hin), hin["system"], hin["value"]) == ("HIN", HEALTH_ID_SYSTEM, "91-5006-4247-3341")
    assert (type_code(abha), abha["value"]) == ("ABHA", "asha.sharma@abdm")
    assert patient["managingOrganization"] == {"reference": "Organization/org-1"}


def test_practitioner_resources() -> None:
    enrollee, _ = parse_row({**ROW, "role": "practitioner"}, today=TODAY)
    practitioner = practitioner_resource(enrollee, HealthId.parse("91500642473341"), "org-1")
    (hpin,) = practitioner["identifier"]
    assert (type_code(hpin), hpin["system"]) == ("HPIN", PRACTITIONER_SYSTEM)
    role = practitioner_role("p1", "org-1", "facility-admin")
    assert role["practitioner"] == {"reference": "Practitioner/p1"} and role["code"] == [
        {"text": "facility administrator"}]


def test_merge_keeps_what_the_existing_resource_holds() -> None:
    enrollee, _ = parse_row(ROW, today=TODAY)
    desired = patient_resource(enrollee, HealthId.parse("91500642473341"), "org-1")
    existing = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"},
                "identifier": [{"system": "urn:other", "value": "x"},
                               {"system": HEALTH_ID_SYSTEM, "value": "91-5006-4247-3341"}],
                "address": [{"city": "Samastipur"}], "telecom": [{"system": "email", "value": "a@b.in"}],
                "managingOrganization": {"reference": "Organization/first"}}
    merged = merge_person(existing, desired)
    assert "meta" not in merged and merged["id"] == "p1" and merged["address"] == [{"city": "Samastipur"}]
    assert [i["value"] for i in merged["identifier"]] == ["91-5006-4247-3341", "x"]
    assert [t["value"] for t in merged["telecom"]] == ["+919876543210", "a@b.in"]
    assert merged["managingOrganization"] == {"reference": "Organization/first"}
