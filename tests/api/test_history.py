"""History of an instance, a type and the system, with _since, _at, _count and paging links."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tests.api import examples


def _patient_with_versions(client: TestClient, versions: int) -> str:
    rid = client.post("/Patient", json=examples.patient()).json()["id"]
    for i in range(versions - 1):
        client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid, "birthDate": f"{1960 + i}-01-01"})
    return rid


def test_instance_history_lists_versions_newest_first(client: TestClient) -> None:
    rid = _patient_with_versions(client, 3)
    bundle = client.get(f"/Patient/{rid}/_history").json()
    assert bundle["type"] == "history"
    assert bundle["total"] == 3
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["3", "2", "1"]
    first = bundle["entry"][-1]
    assert first["request"] == {"method": "POST", "url": "Patient"}
    assert first["response"]["status"].startswith("201")
    assert first["response"]["etag"] == 'W/"1"'
    assert bundle["entry"][0]["request"] == {"method": "PUT", "url": f"Patient/{rid}"}
    assert bundle["entry"][0]["fullUrl"] == f"http://testserver/Patient/{rid}"


def test_history_of_unknown_instance_returns_404(client: TestClient) -> None:
    assert client.get("/Patient/none/_history").status_code == 404


def test_type_and_system_history(client: TestClient) -> None:
    pid = _patient_with_versions(client, 2)
    client.post("/Observation", json=examples.blood_pressure(pid))
    client.post("/Organization", json={"resourceType": "Organization", "name": "PHC"})
    # patient data: a caller sees only what its facility holds, so no total that would count the rest
    patients = client.get("/Patient/_history").json()
    assert len(patients["entry"]) == 2 and "total" not in patients
    assert len(client.get("/Observation/_history").json()["entry"]) == 1
    assert client.get("/Organization/_history").json()["total"] == 1
    system = client.get("/_history").json()
    assert len(system["entry"]) == 4 and "total" not in system
    assert {e["resource"]["resourceType"] for e in system["entry"]} == {"Patient", "Observation", "Organization"}


def test_history_paging_walks_every_version_once(client: TestClient) -> None:
    rid = _patient_with_versions(client, 7)
    seen, url, pages = [], f"/Patient/{rid}/_history?_count=3", 0
    while url:
        bundle = client.get(url).json()
        pages += 1
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert all(u.startswith("http://testserver/") for u in links.values())
        seen += [e["resource"]["meta"]["versionId"] for e in bundle["entry"]]
        url = links.get("next")
        if url:
            client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid})  # writes while paging
    assert pages == 3
    assert seen == ["7", "6", "5", "4", "3", "2", "1"]


def test_history_since_only_returns_later_versions(client: TestClient) -> None:
    rid = _patient_with_versions(client, 2)
    time.sleep(0.01)
    marker = client.get(f"/Patient/{rid}").json()["meta"]["lastUpdated"]
    time.sleep(0.01)
    client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid})
    bundle = client.get(f"/Patient/{rid}/_history", params={"_since": marker}).json()
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["3", "2"]


def test_history_at_returns_the_version_current_then(client: TestClient) -> None:
    rid = client.post("/Patient", json=examples.patient()).json()["id"]
    time.sleep(0.01)
    v1_time = client.get(f"/Patient/{rid}").json()["meta"]["lastUpdated"]
    time.sleep(0.01)
    client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid, "gender": "male"})
    bundle = client.get(f"/Patient/{rid}/_history", params={"_at": v1_time}).json()
    assert [e["resource"]["meta"]["versionId"] for e in bundle["entry"]] == ["1"]
    assert not client.get("/Patient/_history", params={"_at": "1999"}).json().get("entry")


def test_history_with_bad_parameters_returns_400(client: TestClient) -> None:
    for query in ("_since=yesterday", "_count=-1", "_count=ten", "_count=%C2%B2", "_at=2020-13", "_cursor=%%%", "_cursor=Zm9v",
                  "_sort=x"):
        response = client.get(f"/_history?{query}")
        assert response.status_code == 400, query
        assert response.json()["resourceType"] == "OperationOutcome"


def test_deleted_versions_appear_as_delete_entries(client: TestClient) -> None:
    rid = client.post("/Patient", json=examples.patient()).json()["id"]
    client.delete(f"/Patient/{rid}")
    entry = client.get("/Patient/_history").json()["entry"][0]
    assert entry["request"] == {"method": "DELETE", "url": f"Patient/{rid}"}
    assert "resource" not in entry
    assert entry["response"]["etag"] == 'W/"2"'
