"""String search (search.html "string"): case- and accent-insensitive prefix by default, ``:exact``,
``:contains``, OR with commas, AND with repeats, escaped separators."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import Clinic


@pytest.mark.parametrize(("query", "expected"), [
    ("Patient?family=sharma", {"asha"}),
    ("Patient?family=SHAR", {"asha"}),
    ("Patient?family=muller", {"meena"}),
    ("Patient?family=Müller-rao", {"meena"}),
    ("Patient?given=zoe", {"zoe"}),
    ("Patient?given=ZOË", {"zoe"}),
    ("Patient?given=jose", {"jose"}),
    ("Patient?name=kumar", {"ravi"}),
    ("Patient?name=asha sharma", {"asha"}),
    ("Patient?name=harma", set()),
    ("Patient?address-city=samastipur", {"asha", "ravi"}),
    ("Patient?address=bihar", {"asha", "ravi", "zoe"}),
    ("Patient?address-postalcode=8481", {"asha"}),
])
def test_string_matches_a_case_and_accent_insensitive_prefix(clinic: Clinic, query: str, expected: set[str]) -> None:
    assert clinic.found(query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("Patient?family:exact=Sharma", {"asha"}),
    ("Patient?family:exact=sharma", set()),
    ("Patient?family:exact=Shar", set()),
    ("Patient?given:exact=Zoë", {"zoe"}),
    ("Patient?given:exact=Zoe", set()),
    ("Patient?family:exact=MÜLLER-RAO", {"meena"}),
])
def test_exact_compares_the_whole_string_as_written(clinic: Clinic, query: str, expected: set[str]) -> None:
    assert clinic.found(query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("Patient?family:contains=arm", {"asha"}),
    ("Patient?family:contains=ULLER", {"meena"}),
    ("Patient?name:contains=oë", {"zoe"}),
    ("Patient?family:contains=souz", {"zoe"}),
    ("Patient?family:contains=%", set()),
    ("Patient?family:contains=_", set()),
])
def test_contains_matches_anywhere_in_the_string(clinic: Clinic, query: str, expected: set[str]) -> None:
    assert clinic.found(query) == expected


def test_commas_or_values_and_repeats_and_them(clinic: Clinic) -> None:
    assert clinic.found("Patient?family=sharma,kumar") == {"asha", "ravi"}
    assert clinic.found("Patient?family=sharma,kumar&gender=male") == {"ravi"}
    assert clinic.found("Patient?name=asha&name=sharma") == {"asha"}
    assert clinic.found("Patient?name=asha&name=kumar") == set()


def test_an_escaped_comma_is_part_of_the_value(clinic: Clinic) -> None:
    assert clinic.found("Patient?name=Fernandes\\, José") == {"jose"}
    assert clinic.found("Patient?name:exact=Fernandes\\, José") == {"jose"}
    assert clinic.found("Patient?name=Fernandes,Sharma") == {"jose", "asha"}


def test_string_parameters_of_other_types(clinic: Clinic) -> None:
    assert clinic.found("Organization?name=primary") == {"org-phc"}
    assert clinic.found("Practitioner?name=dr.") == {"dr-kumar"}
    assert clinic.found("Practitioner?family=devi") == {"nurse-devi"}
    assert clinic.found("Questionnaire?name=cbac") == {"q-cbac", "q-cbac-2"}


def test_missing_selects_resources_with_or_without_the_element(clinic: Clinic) -> None:
    assert clinic.found("Patient?address:missing=true") == {"jose", "meena"}
    assert clinic.found("Patient?address:missing=false") == {"asha", "ravi", "zoe"}
