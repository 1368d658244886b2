"""PATCH as JSON Patch and as a merge patch, validated before it is stored."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api import examples

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def _create(client: TestClient) -> str:
    return client.post("/Patient", json=examples.patient()).json()["id"]


def test_json_patch_applies_and_increments_the_version(client: TestClient) -> None:
    rid = _create(client)
    ops = [{"op": "replace", "path": "/gender", "value": "male"},
           {"op": "add", "path": "/name/0/given/-", "value": "Devi"}]
    response = client.patch(f"/Patient/{rid}", json=ops, headers=JSON_PATCH)
    assert response.status_code == 200
    body = response.json()
    assert body["gender"] == "male"
    assert body["name"][0]["given"] == ["Asha", "Devi"]
    assert body["meta"]["versionId"] == "2"
    assert client.get(f"/Patient/{rid}").json() == body


def test_merge_patch_as_fhirpy_sends_it(client: TestClient) -> None:
    rid = _create(client)
    response = client.patch(f"/Patient/{rid}", json={"gender": "male", "telecom": None},
                            headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    stored = client.get(f"/Patient/{rid}").json()
    assert stored["gender"] == "male"
    assert "telecom" not in stored
    assert stored["name"][0]["family"] == "Sharma"


def test_patch_producing_an_invalid_resource_returns_400_and_stores_nothing(client: TestClient) -> None:
    rid = _create(client)
    response = client.patch(f"/Patient/{rid}", json=[{"op": "add", "path": "/birthDate", "value": "yesterday"}],
                            headers=JSON_PATCH)
    assert response.status_code == 400
    assert any("Patient.birthDate" in i.get("expression", []) for i in response.json()["issue"])
    assert client.get(f"/Patient/{rid}").json()["meta"]["versionId"] == "1"


def test_failing_json_patch_test_op_returns_422(client: TestClient) -> None:
    rid = _create(client)
    ops = [{"op": "test", "path": "/gender", "value": "male"}, {"op": "remove", "path": "/gender"}]
    assert client.patch(f"/Patient/{rid}", json=ops, headers=JSON_PATCH).status_code == 422
    assert client.get(f"/Patient/{rid}").json()["gender"] == "female"


def test_unapplicable_json_patch_returns_422(client: TestClient) -> None:
    rid = _create(client)
    ops = [{"op": "remove", "path": "/nothing/here"}]
    assert client.patch(f"/Patient/{rid}", json=ops, headers=JSON_PATCH).status_code == 422
    assert client.patch(f"/Patient/{rid}", json={"op": "x"}, headers=JSON_PATCH).status_code == 400


def test_patch_may_not_change_the_id(client: TestClient) -> None:
    rid = _create(client)
    ops = [{"op": "replace", "path": "/id", "value": "other"}]
    assert client.patch(f"/Patient/{rid}", json=ops, headers=JSON_PATCH).status_code == 422


def test_patch_of_missing_or_deleted_resource(client: TestClient) -> None:
    assert client.patch("/Patient/none", json={"gender": "male"}).status_code == 404
    rid = _create(client)
    client.delete(f"/Patient/{rid}")
    assert client.patch(f"/Patient/{rid}", json={"gender": "male"}).status_code == 410
