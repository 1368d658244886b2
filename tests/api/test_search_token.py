"""Token search (search.html "token"): ``code``, ``|code``, ``system|code``, ``system|``, ``:text``,
``:not``, ``:of-type`` on identifiers, escapes, and the common token parameters."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import (
    BP_PANEL,
    CONFIDENTIALITY,
    DIABETES,
    GLUCOSE,
    HBA1C,
    HEALTH_ID,
    HYPERTENSION,
    IDENTIFIER_TYPE,
    LEGACY,
    LOINC,
    MRN,
    NCD_TAGS,
    SNOMED,
    Clinic,
)

LABS = {"glu-asha", "glu-ravi", "glu-zoe", "a1c-asha", "a1c-jose", "a1c-meena"}
BPS = {"bp-asha-jan", "bp-asha-feb", "bp-ravi", "bp-zoe", "bp-meena", "bp-external"}


@pytest.mark.parametrize(("query", "expected"), [
    (f"Observation?code={HBA1C}", {"a1c-asha", "a1c-jose", "a1c-meena"}),
    (f"Observation?code={LOINC}|{HBA1C}", {"a1c-asha", "a1c-jose", "a1c-meena"}),
    (f"Observation?code=http://snomed.info/sct|{HBA1C}", set()),
    (f"Observation?code=|{HBA1C}", set()),
    (f"Observation?code={LOINC}|", LABS | BPS),
    (f"Condition?code={SNOMED}|", {"htn-asha", "dm-asha", "htn-ravi", "dm-zoe"}),
    ("Patient?gender=female", {"asha", "zoe", "meena"}),
    ("Patient?gender=|female", {"asha", "zoe", "meena"}),
    ("Patient?gender=http://hl7.org/fhir/administrative-gender|female", set()),
    ("Patient?active=false", {"meena"}),
    ("Organization?active=true", {"org-phc"}),
    (f"Patient?identifier={HEALTH_ID}|91-5006-4247-3341", {"asha"}),
    ("Patient?identifier=MRN-1002", {"ravi"}),
    (f"Patient?identifier={MRN}|", {"asha", "ravi"}),
    ("Patient?telecom=%2B919800000001", {"asha"}),
    ("Patient?phone=%2B919800000001", {"asha"}),
    ("Observation?status=amended,preliminary", {"bp-zoe", "bp-meena"}),
    (f"Observation?combo-code={GLUCOSE}", {"glu-asha", "glu-ravi", "glu-zoe"}),
    (f"Condition?code={HYPERTENSION}&clinical-status=active", {"htn-asha"}),
])
def test_token_forms(clinic: Clinic, query: str, expected: set[str]) -> None:
    assert clinic.found(query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("Observation?code:text=fasting", {"glu-asha", "glu-ravi", "glu-zoe"}),
    ("Observation?code:text=HEMOGLOBIN", {"a1c-asha", "a1c-jose", "a1c-meena"}),
    ("Condition?code:text=type 2", {"dm-asha", "dm-zoe"}),
    ("Patient?identifier:text=medical record", {"asha"}),
])
def test_text_matches_the_display_text_by_prefix(clinic: Clinic, query: str, expected: set[str]) -> None:
    assert clinic.found(query) == expected


def test_not_returns_resources_without_a_matching_value_including_those_without_any(clinic: Clinic) -> None:
    assert clinic.found("Patient?gender:not=female") == {"ravi", "jose"}
    assert clinic.found(f"Observation?code:not={BP_PANEL}") == LABS
    assert clinic.found(f"Condition?code:not={SNOMED}|{DIABETES}") == {"htn-asha", "htn-ravi"}
    assert clinic.found("Patient?active:not=false") == {"asha", "ravi", "zoe", "jose"}


def test_of_type_matches_the_identifier_type_and_value_together(clinic: Clinic) -> None:
    assert clinic.found(f"Patient?identifier:of-type={IDENTIFIER_TYPE}|MR|MRN-1001") == {"asha"}
    assert clinic.found(f"Patient?identifier:of-type={IDENTIFIER_TYPE}|MR|91-5006-4247-3341") == set()
    assert clinic.found(f"Patient?identifier:of-type=|MR|MRN-1002") == {"ravi"}


def test_escaped_separators_are_part_of_the_token(clinic: Clinic) -> None:
    assert clinic.found(f"Patient?identifier={LEGACY}|A\\,B\\|C\\$D\\\\E") == {"jose"}
    assert clinic.found("Patient?identifier=A\\,B\\|C\\$D\\\\E") == {"jose"}
    assert clinic.found(f"Patient?identifier={LEGACY}|A") == set()


def test_common_token_parameters(clinic: Clinic) -> None:
    assert clinic.found(f"Patient?_tag={NCD_TAGS}|ncd-screened") == {"asha"}
    assert clinic.found("Patient?_tag:not=ncd-screened") == {"ravi", "zoe", "jose", "meena"}
    assert clinic.found(f"Patient?_id={clinic.id('asha')},{clinic.id('zoe')}") == {"asha", "zoe"}
    assert clinic.found("Patient?_id=unknown") == set()


def test_security_labels_and_sources(clinic: Clinic) -> None:
    assert clinic.found(f"Patient?_security={CONFIDENTIALITY}|R") == {"meena"}
    # every stored record carries its record-holder label (the facility that wrote it)
    assert clinic.found("Patient?_security:missing=true") == set()
    assert clinic.found(f"Patient?_security:not={CONFIDENTIALITY}|R") == {"asha", "ravi", "zoe", "jose"}
    assert clinic.found("Patient?_source=https://chc-dalsinghsarai.example.in/emr") == {"zoe"}
    assert clinic.found("Patient?_source:below=https://chc-dalsinghsarai.example.in") == {"zoe"}


def test_missing_on_tokens(clinic: Clinic) -> None:
    assert clinic.found("Patient?active:missing=false") == {"meena"}
    assert clinic.found("Patient?telecom:missing=false") == {"asha"}
