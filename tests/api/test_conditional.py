"""Conditional create, update, patch and delete, including the race-free conditional create."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient

from tests.api import examples

IDENT = "https://healthid.abdm.gov.in|91-5006-4247-3341"


def _count(client: TestClient, query: str) -> int:
    return client.get(f"/Patient?{query}").json()["total"]


def test_if_none_exist_header_creates_once_then_returns_the_existing(client: TestClient) -> None:
    first = client.post("/Patient", json=examples.patient(), headers={"If-None-Exist": f"identifier={IDENT}"})
    assert first.status_code == 201
    second = client.post("/Patient", json=examples.patient(), headers={"If-None-Exist": f"identifier={IDENT}"})
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["meta"]["versionId"] == "1"
    assert _count(client, "_id=" + first.json()["id"]) == 1
    assert client.get("/Patient").json()["total"] == 1


def test_query_string_conditional_create_as_fhirpy_sends_it(client: TestClient) -> None:
    url = "/Patient?identifier=https%3A%2F%2Fhealthid.abdm.gov.in%7C91-5006-4247-3341"
    first = client.post(url, json=examples.patient(), headers={"Content-Type": "application/json"})
    second = client.post(url, json=examples.patient(), headers={"Content-Type": "application/json"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert client.get("/Patient").json()["total"] == 1


def test_conditional_create_with_several_matches_returns_412(client: TestClient) -> None:
    client.post("/Patient", json=examples.patient())
    client.post("/Patient", json=examples.patient())
    response = client.post("/Patient", json=examples.patient(), headers={"If-None-Exist": f"identifier={IDENT}"})
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/Patient").json()["total"] == 2


def test_conditional_create_with_bad_criteria_returns_400(client: TestClient) -> None:
    response = client.post("/Patient", json=examples.patient(), headers={"If-None-Exist": "birthdate=notadate"})
    assert response.status_code == 400
    assert client.get("/Patient").json()["total"] == 0


def test_conditional_update_creates_then_updates_the_single_match(client: TestClient) -> None:
    url = f"/Patient?identifier={IDENT}"
    created = client.put(url, json=examples.patient())
    assert created.status_code == 201
    rid = created.json()["id"]
    updated = client.put(url, json={**examples.patient(), "gender": "other"})
    assert updated.status_code == 200
    assert updated.json()["id"] == rid
    assert updated.json()["meta"]["versionId"] == "2"
    assert client.get(f"/Patient/{rid}").json()["gender"] == "other"


def test_conditional_update_with_several_matches_returns_412(client: TestClient) -> None:
    client.post("/Patient", json=examples.patient())
    client.post("/Patient", json=examples.patient())
    response = client.put(f"/Patient?identifier={IDENT}", json={**examples.patient(), "gender": "other"})
    assert response.status_code == 412
    assert all(e["resource"]["gender"] == "female" for e in client.get("/Patient").json()["entry"])


def test_conditional_update_with_conflicting_body_id_returns_400(client: TestClient) -> None:
    rid = client.post("/Patient", json=examples.patient()).json()["id"]
    response = client.put(f"/Patient?identifier={IDENT}", json={**examples.patient(), "id": "other"})
    assert response.status_code == 400
    assert client.get(f"/Patient/{rid}").json()["meta"]["versionId"] == "1"


def test_conditional_delete_deletes_the_single_match(client: TestClient) -> None:
    rid = client.post("/Patient", json=examples.patient()).json()["id"]
    response = client.delete(f"/Patient?identifier={IDENT}")
    assert response.status_code == 200
    assert client.get(f"/Patient/{rid}").status_code == 410
    assert client.delete(f"/Patient?identifier={IDENT}").status_code == 404


def test_conditional_delete_with_several_matches_returns_412(client: TestClient) -> None:
    client.post("/Patient", json=examples.patient())
    client.post("/Patient", json=examples.patient())
    assert client.delete(f"/Patient?identifier={IDENT}").status_code == 412
    assert client.get("/Patient").json()["total"] == 2


def test_conditional_patch_patches_the_single_match(client: TestClient) -> None:
    rid = client.post("/Patient", json=examples.patient()).json()["id"]
    response = client.patch(f"/Patient?identifier={IDENT}", json=[{"op": "replace", "path": "/gender", "value": "male"}],
                            headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 200
    assert client.get(f"/Patient/{rid}").json()["gender"] == "male"


def test_type_level_put_and_delete_without_criteria_return_400(client: TestClient) -> None:
    assert client.put("/Patient", json=examples.patient()).status_code == 400
    assert client.delete("/Patient").status_code == 400


def test_twenty_concurrent_identical_conditional_creates_leave_exactly_one(live_server) -> None:
    server = live_server()

    def attempt(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as http:
            return http.post("/Patient", json=examples.patient(), headers={"If-None-Exist": f"identifier={IDENT}"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(attempt, range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        assert http.get("/Patient").json()["total"] == 1
