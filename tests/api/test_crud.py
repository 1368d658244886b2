"""Read, vread, create, update, delete of every first-class type, with the headers clients need."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api import examples

FHIR_JSON = "application/fhir+json"


def create(client: TestClient, resource: dict) -> dict:
    response = client.post(f"/{resource['resourceType']}", json=resource, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("make", [
    lambda: examples.patient(), lambda: examples.practitioner(), lambda: examples.organization(),
    lambda: examples.encounter("p1"), lambda: examples.blood_pressure("p1"), lambda: examples.medication_request("p1"),
], ids=["Patient", "Practitioner", "Organization", "Encounter", "Observation", "MedicationRequest"])
def test_create_then_read_returns_the_resource_with_server_id_and_meta(client: TestClient, make) -> None:
    resource = make()
    response = client.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201
    body = response.json()
    rid = body["id"]
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"] == f"http://testserver/{resource['resourceType']}/{rid}/_history/1"
    assert response.headers["Last-Modified"].endswith("GMT")
    assert response.headers["Content-Type"] == "application/fhir+json; charset=utf-8"
    read = client.get(f"/{resource['resourceType']}/{rid}")
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["ETag"] == 'W/"1"'
    stripped = {k: v for k, v in read.json().items() if k not in ("id", "meta")}
    assert stripped == resource


def test_create_ignores_a_client_supplied_id(client: TestClient) -> None:
    body = create(client, {**examples.patient(), "id": "mine"})
    assert body["id"] != "mine"
    assert client.get("/Patient/mine").status_code == 404


def test_update_increments_version_and_vread_returns_each_version(client: TestClient) -> None:
    created = create(client, examples.patient())
    rid = created["id"]
    changed = {**created, "gender": "other"}
    response = client.put(f"/Patient/{rid}", json=changed)
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert response.headers["ETag"] == 'W/"2"'
    assert response.headers["Location"].endswith(f"/Patient/{rid}/_history/2")
    assert client.get(f"/Patient/{rid}/_history/1").json()["gender"] == "female"
    assert client.get(f"/Patient/{rid}/_history/2").json()["gender"] == "other"
    assert client.get(f"/Patient/{rid}").json()["gender"] == "other"
    assert client.get(f"/Patient/{rid}/_history/3").status_code == 404
    assert client.get(f"/Patient/{rid}/_history/x").status_code == 404


def test_update_as_create_with_a_client_chosen_id_returns_201(client: TestClient) -> None:
    response = client.put("/Patient/ncd-0001", json={**examples.patient(), "id": "ncd-0001"})
    assert response.status_code == 201
    assert response.json()["id"] == "ncd-0001"
    assert response.json()["meta"]["versionId"] == "1"
    assert client.get("/Patient/ncd-0001").status_code == 200


def test_update_with_body_id_different_from_url_returns_400(client: TestClient) -> None:
    response = client.put("/Patient/a1", json={**examples.patient(), "id": "b2"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/Patient/a1").status_code == 404


def test_update_without_body_id_returns_400(client: TestClient) -> None:
    response = client.put("/Patient/a1", json=examples.patient())
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.id"]


def test_update_with_an_invalid_id_returns_400(client: TestClient) -> None:
    bad = "x" * 65
    response = client.put(f"/Patient/{bad}", json={**examples.patient(), "id": bad})
    assert response.status_code == 400


def test_body_type_different_from_url_type_returns_400(client: TestClient) -> None:
    response = client.post("/Observation", json=examples.patient())
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["resourceType"]
    response = client.put("/Observation/x", json={**examples.patient(), "id": "x"})
    assert response.status_code == 400
    assert client.get("/Observation/x").status_code == 404


def test_unknown_resource_type_returns_404_outcome(client: TestClient) -> None:
    for response in (client.get("/Patientt/1"), client.post("/Foo", json={"resourceType": "Foo"}),
                     client.get("/Foo")):
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"


def test_invalid_content_returns_400_naming_the_element_path(client: TestClient) -> None:
    bad = {**examples.patient(), "birthDate": "1980-13-45"}
    response = client.post("/Patient", json=bad)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("Patient.birthDate" in issue.get("expression", []) for issue in outcome["issue"])
    unknown = {**examples.patient(), "favouriteColour": "blue"}
    response = client.post("/Patient", json=unknown)
    assert response.status_code == 400
    assert any("Patient.favouriteColour" in issue.get("expression", []) for issue in response.json()["issue"])
    nested = examples.patient()
    nested["name"][0]["given"] = "Asha"
    response = client.post("/Patient", json=nested)
    assert response.status_code == 400
    assert any("Patient.name[0].given" in issue.get("expression", []) for issue in response.json()["issue"])
    assert client.get("/Patient").json()["total"] == 0


def test_delete_makes_read_return_410_and_keeps_history(client: TestClient) -> None:
    rid = create(client, examples.patient())["id"]
    response = client.delete(f"/Patient/{rid}")
    assert response.status_code == 200
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["ETag"] == 'W/"2"'
    gone = client.get(f"/Patient/{rid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{rid}/_history/1").status_code == 200
    assert client.get(f"/Patient/{rid}/_history/2").status_code == 410
    history = client.get(f"/Patient/{rid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert client.delete(f"/Patient/{rid}").status_code == 204
    assert client.get(f"/Patient/{rid}/_history").json()["total"] == 2


def test_delete_of_unknown_resource_returns_404(client: TestClient) -> None:
    assert client.delete("/Patient/nope").status_code == 404


def test_update_after_delete_recreates_with_next_version(client: TestClient) -> None:
    rid = create(client, examples.patient())["id"]
    client.delete(f"/Patient/{rid}")
    response = client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid})
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "3"
    assert client.get(f"/Patient/{rid}").status_code == 200


def test_search_after_write_finds_first_class_resources(client: TestClient) -> None:
    pid = create(client, examples.patient())["id"]
    for resource in examples.first_class(pid)[1:]:
        create(client, resource)
    bundle = client.get(f"/Observation?subject=Patient/{pid}").json()
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert client.get("/Patient?identifier=https://healthid.abdm.gov.in|91-5006-4247-3341").json()["total"] == 1
    assert client.get("/MedicationRequest?subject=" + pid).json()["total"] == 1
    assert client.get("/Encounter?date=2026-01-10").json()["total"] == 1


def test_no_storage_internals_appear_in_responses(client: TestClient) -> None:
    rid = create(client, examples.patient())["id"]
    client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid})
    for url in (f"/Patient/{rid}", f"/Patient/{rid}/_history", "/Patient", "/_history", f"/Patient/{rid}/_history/1"):
        text = client.get(url).text
        for internal in ('"_id"', "ObjectId", '"pk"', '"pkey"', '"tok"', '"idx'):
            assert internal not in text, (url, internal)


def test_vread_with_an_out_of_range_or_non_ascii_version_returns_404(client: TestClient) -> None:
    rid = create(client, examples.patient())["id"]
    for version in ("99999999999999999999", "\u00b2", "-1", "1.0"):
        response = client.get(f"/Patient/{rid}/_history/{version}")
        assert response.status_code == 404, version
        assert response.json()["resourceType"] == "OperationOutcome"
