"""``$validate``: an OperationOutcome for valid and invalid resources, nothing stored."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api import examples, nrces


def _severities(outcome: dict) -> list[str]:
    assert outcome["resourceType"] == "OperationOutcome"
    return [issue["severity"] for issue in outcome["issue"]]


def test_valid_resource_gets_an_informational_outcome(client: TestClient) -> None:
    response = client.post("/Patient/$validate", json=examples.patient())
    assert response.status_code == 200
    assert _severities(response.json()) == ["information"]
    assert client.get("/Patient?_total=accurate").json()["total"] == 0


def test_invalid_resource_gets_errors_naming_the_elements_with_status_200(client: TestClient) -> None:
    invalid = {**examples.patient(), "gender": 3, "birthDate": "05/09/1980", "nickname": "Ash"}
    response = client.post("/Patient/$validate", json=invalid)
    assert response.status_code == 200
    outcome = response.json()
    assert set(_severities(outcome)) == {"error"}
    paths = {e for issue in outcome["issue"] for e in issue.get("expression", [])}
    assert {"Patient.gender", "Patient.birthDate", "Patient.nickname"} <= paths
    assert client.get("/Patient?_total=accurate").json()["total"] == 0


def test_parameters_body_with_resource_and_mode(client: TestClient) -> None:
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": examples.blood_pressure("p1")}, {"name": "mode", "valueCode": "create"}]}
    assert _severities(client.post("/Observation/$validate", json=parameters).json()) == ["information"]


def test_instance_validate_checks_the_id_as_an_update_would(client: TestClient) -> None:
    ok = client.post("/Patient/p1/$validate", json={**examples.patient(), "id": "p1"}).json()
    assert _severities(ok) == ["information"]
    mismatch = client.post("/Patient/p1/$validate", json={**examples.patient(), "id": "p2"}).json()
    assert _severities(mismatch) == ["error"]
    delete = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}
    assert _severities(client.post("/Patient/p1/$validate", json=delete).json()) == ["error"]


def test_document_rules_are_part_of_validating_a_bundle(client: TestClient) -> None:
    assert _severities(client.post("/Bundle/$validate", json=nrces.discharge_summary()).json()) == ["information"]
    broken = nrces.discharge_summary()
    broken["entry"].pop(1)
    outcome = client.post("/Bundle/$validate", json=broken).json()
    assert set(_severities(outcome)) == {"error"}
    assert "Bundle.entry[0].resource.subject.reference" in outcome["issue"][0]["expression"]


def test_requests_that_cannot_be_validated_get_400(client: TestClient) -> None:
    cases = [
        ("/Patient/$validate", b"{not json"),
        ("/Patient/$validate", b"[]"),
        ("/Patient/$validate", b'{"resourceType": "Observation", "status": "final"}'),
        ("/Patient/$validate", b'{"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "x"}]}'),
        ("/Patient/$validate", b'{"resourceType": "Parameters", "parameter": []}'),
        ("/Patient/bad id!/$validate", b'{"resourceType": "Patient"}'),
    ]
    for path, body in cases:
        response = client.post(path, content=body, headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 400, (path, body, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert client.post("/Unicorn/$validate", json={"resourceType": "Unicorn"}).status_code == 404
