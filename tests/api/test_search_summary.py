"""``_summary`` and ``_elements`` on search results and on read/vread, marked SUBSETTED."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.ncd_clinic import BP_PANEL, HBA1C, Clinic

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def subsetted(resource: dict[str, Any]) -> bool:
    return any({k: t.get(k) for k in SUBSETTED} == SUBSETTED for t in resource["meta"].get("tag", ()))


def resources(clinic: Clinic, query: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in clinic.search(query)["entry"] if e["search"]["mode"] != "outcome"]


def test_summary_true_keeps_the_summary_elements_of_each_type(clinic: Clinic) -> None:
    [patient] = resources(clinic, f"Patient?_id={clinic.id('asha')}&_summary=true")
    assert subsetted(patient)
    assert {"name", "gender", "birthDate", "identifier", "address", "managingOrganization", "id", "meta"} <= set(patient)
    assert "generalPractitioner" not in patient and "telecom" in patient
    assert patient["meta"]["versionId"] == "1" and {"system": "https://ncd.example.in/tags",
                                                    "code": "ncd-screened"} in patient["meta"]["tag"]


def test_summary_true_subsets_backbone_elements_too(clinic: Clinic) -> None:
    [bp] = resources(clinic, f"Observation?_id={clinic.id('bp-asha-jan')}&_summary=true")
    assert "category" not in bp and {"status", "code", "subject", "effectiveDateTime", "component"} <= set(bp)
    assert all(set(component) == {"code", "valueQuantity"} for component in bp["component"])
    [glucose] = resources(clinic, f"Observation?_id={clinic.id('glu-asha')}&_summary=true")
    assert "interpretation" not in glucose and glucose["valueQuantity"]["value"] == 182


def test_summary_text_and_data(clinic: Clinic) -> None:
    [text] = resources(clinic, f"Observation?_id={clinic.id('a1c-asha')}&_summary=text")
    assert set(text) == {"resourceType", "id", "meta", "status", "code"}  # no narrative stored: none to keep
    [data] = resources(clinic, f"Observation?_id={clinic.id('a1c-asha')}&_summary=data")
    full = clinic.client.get(f"/{clinic.ref('a1c-asha')}").json()
    assert subsetted(data) and {k: v for k, v in data.items() if k != "meta"} == {
        k: v for k, v in full.items() if k not in ("meta", "text")}


def test_summary_false_returns_resources_whole_and_untagged(clinic: Clinic) -> None:
    [patient] = resources(clinic, f"Patient?_id={clinic.id('asha')}&_summary=false")
    assert patient == clinic.client.get(f"/{clinic.ref('asha')}").json() and not subsetted(patient)


def test_summary_count_returns_only_the_total(clinic: Clinic) -> None:
    bundle = clinic.search(f"Observation?code={HBA1C}&_summary=count")
    assert bundle["total"] == 3 and bundle["entry"] == []


def test_elements_keeps_the_named_and_the_mandatory_elements(clinic: Clinic) -> None:
    observations = resources(clinic, f"Observation?code={BP_PANEL}&_elements=subject,effective")
    assert observations and all(set(o) == {"resourceType", "id", "meta", "status", "code", "subject",
                                           "effectiveDateTime"} for o in observations)
    assert all(subsetted(o) for o in observations)
    [a1c] = resources(clinic, f"Observation?_id={clinic.id('a1c-asha')}&_elements=value[x]")
    assert a1c["valueQuantity"]["value"] == 8.2 and "subject" not in a1c


def test_type_qualified_elements_apply_to_that_type_only(clinic: Clinic) -> None:
    bundle = clinic.search(f"Observation?code={HBA1C}&_include=Observation:subject"
                           "&_elements=Patient.name,Observation.subject")
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            assert set(resource) == {"resourceType", "id", "meta", "name"} and subsetted(resource)
        else:
            assert set(resource) == {"resourceType", "id", "meta", "status", "code", "subject"}
    untouched = resources(clinic, f"Observation?code={HBA1C}&_elements=Patient.name")
    assert all("valueQuantity" in o and not subsetted(o) for o in untouched)


def test_includes_are_subsetted_like_matches(clinic: Clinic) -> None:
    bundle = clinic.search(f"Observation?_id={clinic.id('a1c-asha')}&_include=Observation:subject&_summary=true")
    patient = next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include")
    assert subsetted(patient) and "generalPractitioner" not in patient


@pytest.mark.parametrize("path", ["", "/_history/1"])
def test_read_and_vread_honour_summary_and_elements(clinic: Clinic, path: str) -> None:
    url = f"/{clinic.ref('asha')}{path}"
    summary = clinic.client.get(f"{url}?_summary=true")
    assert summary.status_code == 200 and subsetted(summary.json()) and "generalPractitioner" not in summary.json()
    assert summary.headers["ETag"] == 'W/"1"'
    elements = clinic.client.get(f"{url}?_elements=birthDate").json()
    assert set(elements) == {"resourceType", "id", "meta", "birthDate"}
    assert not subsetted(clinic.client.get(f"{url}?_summary=false&_pretty=true").json())
    assert clinic.client.get(f"{url}?_summary=count").status_code == 400
    assert clinic.client.get(f"{url}?_summary=true&_elements=name").status_code == 400


@pytest.mark.parametrize("query", ["_summary=yes", "_summary=true&_elements=name", "_elements=name.family",
                                   "_elements=Spaceship.name", "_elements=1x", "_summary:x=true"])
def test_bad_summary_and_elements_are_bad_requests(clinic: Clinic, query: str) -> None:
    assert clinic.status(f"Patient?{query}") == 400
