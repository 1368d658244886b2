"""Unknown parameters are ignored and reported (``search.mode=outcome``), or refused with
``Prefer: handling=strict``; every unreadable value is a 400 OperationOutcome naming the parameter,
never a 500."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import Clinic


def test_unknown_parameters_are_ignored_and_reported_in_an_outcome_entry(clinic: Clinic) -> None:
    bundle = clinic.search("Patient?family=sharma&_totalMethod=count&nickname=ash")
    assert clinic.labels(bundle) == {"asha"}
    outcome = bundle["entry"][-1]
    assert outcome["search"]["mode"] == "outcome" and outcome["resource"]["resourceType"] == "OperationOutcome"
    diagnostics = " ".join(i["diagnostics"] for i in outcome["resource"]["issue"])
    assert "_totalMethod" in diagnostics and "nickname" in diagnostics
    assert all(i["severity"] == "warning" for i in outcome["resource"]["issue"])
    assert bundle["total"] == 1
    assert "outcome" not in {e["search"]["mode"] for e in clinic.search("Patient?family=sharma")["entry"]}


def test_strict_handling_refuses_unknown_parameters(clinic: Clinic) -> None:
    response = clinic.client.get("Patient?family=sharma&nickname=ash", headers={"Prefer": "handling=strict"})
    assert response.status_code == 400 and response.json()["issue"][0]["expression"] == ["nickname"]
    lenient = clinic.client.get("Patient?family=sharma&nickname=ash", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    assert clinic.status("Patient?family=sharma&_format=json&_pretty=true", prefer="handling=strict") == 200


@pytest.mark.parametrize("query", [
    "Patient?birthdate=1980-02-30", "Patient?birthdate=xx1980", "Patient?birthdate=gt", "Patient?birthdate=1980/01/01",
    "Patient?birthdate:exact=1980", "Patient?birthdate:missing=maybe", "Observation?date=2026-01-10T10:00:00+25:00",
    "RiskAssessment?probability=high", "RiskAssessment?probability=1,2,x", "RiskAssessment?probability=ab0.5",
    "Observation?value-quantity=5|a|b|c", "Observation?value-quantity=|mg",
    "Patient?family:fuzzy=sh", "Patient?family:not=sh", "Patient?gender:exact=female", "Patient?gender:below=f",
    "Patient?gender:in=http://x", "Patient?identifier:of-type=MR", "Patient?identifier=a|b|c",
    "Observation?subject:identifier=a|b|c", "Observation?subject=Patient/", "Observation?subject:Patient=Group/1",
    "Observation?component-code-value-quantity=8480-6$", "Observation?component-code-value-quantity=$1",
    "Patient?_count=many", "Patient?_count=-5", "Patient?_sort=nickname", "Patient?_sort=-",
    "Patient?_include=Patient", "Patient?_include=Patient:name", "Patient?_revinclude=Observation:code",
    "Patient?_include:recurse=Patient:spaceship", "Patient?_total=exact", "Patient?_summary=short",
    "Patient?_elements=a.b.c", "Patient?_cursor=!!", "Patient?_has:Observation:subject", "?_type=Spaceship",
    "Patient?_lastUpdated=yesterday", "Patient?_id:missing=perhaps", "Patient?name:contains:exact=x",
])
def test_bad_values_are_bad_requests_with_an_operation_outcome(clinic: Clinic, query: str) -> None:
    response = clinic.client.get(query)
    assert response.status_code == 400, (query, response.status_code, response.text)
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"


def test_an_empty_value_is_ignored(clinic: Clinic) -> None:
    assert clinic.found("Patient?family=&gender=male") == {"ravi", "jose"}
