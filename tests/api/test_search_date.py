"""Date search (search.html "date"): every prefix compares the search value's range at its precision
with the stored range (a date's day, a Period, an open-ended Period), in UTC; search values may carry
a time zone. Data: birth dates at day and year precision, observation times in IST (+05:30)."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import BP_PANEL, GLUCOSE, HBA1C, Clinic

PATIENTS = {"asha", "ravi", "zoe", "jose", "meena"}


@pytest.mark.parametrize(("value", "expected"), [
    ("1980", {"asha"}),
    ("1980-09", {"asha"}),
    ("1980-09-05", {"asha"}),
    ("1980-09-06", set()),
    ("1962", {"zoe"}),  # a year-precision birth date equals the year ...
    ("1962-05-01", set()),  # ... but a day cannot contain it
    ("ne1962", PATIENTS - {"zoe"}),
    ("ap1962-05-01", {"zoe"}),
    ("gt1980-09-04", {"asha", "meena"}),
    ("gt1980-09-05", {"meena"}),
    ("ge1980-09-05", {"asha", "meena"}),
    ("lt1975-03-14", {"zoe", "jose"}),
    ("le1975-03-14", {"ravi", "zoe", "jose"}),
    ("gt1962", {"ravi", "asha", "meena"}),
    ("ge1962", {"zoe", "ravi", "asha", "meena"}),
    ("ge1962-06-01", {"zoe", "ravi", "asha", "meena"}),
    ("le1962-06-01", {"zoe", "jose"}),
    ("sa1980", {"meena"}),
    ("eb1962", {"jose"}),
    ("lt1959-01-01", {"jose"}),
    ("lt1958-12-31", set()),
    ("eb1959-01", {"jose"}),
    ("1958-12", {"jose"}),
])
def test_birth_date_prefixes_at_every_precision(clinic: Clinic, value: str, expected: set[str]) -> None:
    assert clinic.found(f"Patient?birthdate={value}") == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-10", {"bp-asha-jan"}),
    ("2026-01-10T09:10:00%2B05:30", {"bp-asha-jan"}),  # the stored second, written in IST
    ("2026-01-10T09:10:00 05:30", {"bp-asha-jan"}),  # an unencoded "+" arrives as a space
    ("2026-01-10T03:40:00Z", {"bp-asha-jan"}),  # the same moment in UTC
    ("2026-01-10T09:10%2B05:30", {"bp-asha-jan"}),  # the minute contains the second
    ("2026-01-10T09:11%2B05:30", set()),
    ("2026-01-10T09:10:00.000%2B05:30", set()),  # a millisecond cannot contain a second
    ("gt2026-01-10T09:10:00%2B05:30", {"bp-asha-feb", "bp-meena", "bp-external"}),
    ("ge2026-01-10T09:10:00%2B05:30", {"bp-asha-jan", "bp-asha-feb", "bp-meena", "bp-external"}),
    ("lt2026-01-10T09:10:00%2B05:30", {"bp-ravi", "bp-zoe"}),
    ("le2026-01-10T09:10:00%2B05:30", {"bp-asha-jan", "bp-ravi", "bp-zoe"}),
    ("sa2026-01-10", {"bp-asha-feb", "bp-meena", "bp-external"}),
    ("eb2026-01-10", {"bp-ravi", "bp-zoe"}),
    ("2025-12-31", {"bp-ravi"}),  # 23:30 IST is still the 31st in UTC
    ("2026-03-01", {"bp-meena"}),
    ("ap2026-03", {"bp-meena"}),
])
def test_observation_times_with_time_zones_and_second_precision(clinic: Clinic, value: str,
                                                                 expected: set[str]) -> None:
    assert clinic.found(f"Observation?code={BP_PANEL}&date={value}") == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-10", {"enc-asha-jan"}),
    ("2026-02", set()),  # an open-ended Period is contained in no month
    ("ap2026-02", {"enc-asha-feb"}),  # ... but overlaps it
    ("ge2030-01-01", {"enc-asha-feb"}),  # it reaches into any future
    ("le2020-01-01", {"enc-zoe"}),  # a Period without a start reaches into any past
    ("lt2026-01-01", {"enc-ravi", "enc-zoe"}),
    ("gt2025-12-31", {"enc-asha-jan", "enc-asha-feb"}),
    ("ne2026-01-10", {"enc-asha-feb", "enc-ravi", "enc-zoe"}),
    ("2025-12-31", {"enc-ravi"}),  # 22:00 to 01:00 IST on New Year's Eve is all on the 31st in UTC
    ("2026-01-01", set()),
    ("ge2026-01-01T00:00:00%2B05:30", {"enc-ravi", "enc-asha-jan", "enc-asha-feb"}),
    ("lt2025-12-31T22:00:00%2B05:30", {"enc-zoe"}),
    ("le2025-12-31T22:00:00%2B05:30", {"enc-zoe"}),
    ("le2025-12-31T22:00:01%2B05:30", {"enc-zoe", "enc-ravi"}),
    ("sa2025-06-30", {"enc-ravi", "enc-asha-jan", "enc-asha-feb"}),
    ("eb2025-07-01", {"enc-zoe"}),
])
def test_periods_and_open_ended_periods_are_compared_as_ranges(clinic: Clinic, value: str,
                                                               expected: set[str]) -> None:
    assert clinic.found(f"Encounter?date={value}") == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("2025-11", {"a1c-jose"}),  # November 1-30 lies in November
    ("2025-11-15", set()),
    ("ap2025-11-15", {"a1c-jose"}),
    ("ge2025-11-15", {"a1c-jose", "a1c-asha", "a1c-meena"}),
    ("ge2025-11-30", {"a1c-asha", "a1c-meena"}),  # ends within the day: neither after it nor inside it
    ("le2025-11-15", {"a1c-jose"}),
    ("sa2025-10-31", {"a1c-jose", "a1c-asha", "a1c-meena"}),
    ("eb2025-12-01", {"a1c-jose"}),
    ("eb2025-11-30", set()),
])
def test_an_effective_period_against_day_and_month_values(clinic: Clinic, value: str, expected: set[str]) -> None:
    assert clinic.found(f"Observation?code={HBA1C}&date={value}") == expected


def test_missing_on_dates(clinic: Clinic) -> None:
    assert clinic.found("Patient?death-date:missing=false") == {"jose"}
    assert clinic.found("Condition?abatement-date:missing=false") == {"htn-ravi"}
    assert clinic.found("Condition?onset-date:missing=true") == {"htn-ravi"}


def test_date_criteria_combine(clinic: Clinic) -> None:
    assert clinic.found("Patient?birthdate=ge1960&birthdate=lt1980") == {"zoe", "ravi"}
    assert clinic.found("Patient?birthdate=1962,1990") == {"zoe", "meena"}
    assert clinic.found("Condition?onset-date=2019") == {"htn-asha"}
    assert clinic.found("Condition?onset-date=ge2021-06-15") == {"dm-asha", "dm-zoe"}  # June 2021 reaches past
    assert clinic.found("Condition?onset-date=ge2021-07-01") == {"dm-zoe"}  # onset 2015 to an open end
    assert clinic.found("MedicationRequest?authoredon=2026-01-10") == {"amlo-asha", "met-asha"}
    assert clinic.found("Patient?death-date=2026-02-01") == {"jose"}


@pytest.mark.parametrize("value", ["2026-13-01", "2026-02-30", "01-01-2026", "2026-01-10T25:00", "yesterday",
                                   "2026-01-10T09:10:00+5", "zz2026", "gt", "2026-01-10T09"])
def test_unreadable_dates_are_bad_requests(clinic: Clinic, value: str) -> None:
    response = clinic.client.get(f"Observation?date={value}")
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["date"]


def test_last_updated_matches_the_instant_the_server_stamped(clinic: Clinic) -> None:
    stamped = clinic.client.get(f"/{clinic.ref('glu-asha')}").json()["meta"]["lastUpdated"]  # to the millisecond
    instant = stamped.replace("+", "%2B")
    assert "glu-asha" in clinic.found(f"Observation?_lastUpdated={instant}")
    assert "glu-asha" in clinic.found(f"Observation?_lastUpdated=le{instant}")
    assert "glu-asha" in clinic.found(f"Observation?_lastUpdated=ge{instant}&code={GLUCOSE}")
    assert "glu-asha" not in clinic.found(f"Observation?_lastUpdated=gt{instant}")
    assert "glu-asha" not in clinic.found(f"Observation?_lastUpdated=lt{instant}")
    assert "glu-asha" not in clinic.found(f"Observation?_lastUpdated=ne{instant}")
    assert clinic.found(f"Observation?_lastUpdated=le{instant}") | clinic.found(
        f"Observation?_lastUpdated=gt{instant}") == clinic.found("Observation?_lastUpdated:missing=false")
    assert clinic.found("Observation?_lastUpdated:missing=true") == set()
    assert "asha" in clinic.found(f"Patient?_has:Observation:subject:_lastUpdated={instant}")
