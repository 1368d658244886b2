"""Batch bundles: every entry on its own, every outcome reported in request order."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api import examples
from tests.api.test_transaction import IDENT, post, put, request


def batch(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}


def test_batch_with_mixed_outcomes_reports_each_and_keeps_the_successes(client: TestClient) -> None:
    kept = client.post("/Patient", json=examples.patient()).json()
    client.post("/Patient", json=examples.patient())
    invalid = {**examples.organization(), "active": "sometimes"}
    response = client.post("/", json=batch(
        post(examples.practitioner()),
        post(invalid),
        request("GET", "Patient/does-not-exist"),
        request("GET", f"Patient/{kept['id']}"),
        request("GET", f"Patient?identifier={IDENT}&_total=accurate"),
        put(f"Patient?identifier={IDENT}", examples.patient()),
        {"resource": examples.patient()},
        request("GET", "Observation?date=notadate"),
        request("DELETE", f"Patient/{kept['id']}"),
    ))
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "404 Not Found", "200 OK", "200 OK",
                        "412 Precondition Failed", "400 Bad Request", "400 Bad Request", "204 No Content"]
    for index in (1, 2, 5, 6, 7):
        outcome = body["entry"][index]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    assert body["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0].startswith("Organization.active")
    assert body["entry"][3]["resource"]["id"] == kept["id"]
    assert body["entry"][4]["resource"]["total"] == 2
    created = body["entry"][0]["response"]["location"].split("/")[1]
    assert client.get(f"/Practitioner/{created}").status_code == 200
    assert client.get("/Organization", params={"_total": "accurate"}).json()["total"] == 0
    assert client.get(f"/Patient/{kept['id']}").status_code == 410


def test_batch_entries_do_not_see_each_others_fullurls(client: TestClient) -> None:
    """No interdependencies in a batch: a urn:uuid reference stays as written."""
    observation = {**examples.blood_pressure("x"), "subject": {"reference": "urn:uuid:cccccccc-0000-4000-8000-0"}}
    response = client.post("/", json=batch(post(examples.patient(), "urn:uuid:cccccccc-0000-4000-8000-0"),
                                           post(observation)))
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "201 Created"]
    assert entries[1]["resource"]["subject"] == {"reference": "urn:uuid:cccccccc-0000-4000-8000-0"}


def test_batch_vread_and_history_entries(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    client.put(f"/Patient/{patient['id']}", json={**patient, "gender": "other"})
    entries = client.post("/", json=batch(
        request("GET", f"Patient/{patient['id']}/_history/1"),
        request("GET", f"Patient/{patient['id']}/_history"),
        request("GET", f"Patient/{patient['id']}/_history/9"),
    )).json()["entry"]
    assert entries[0]["resource"]["gender"] == "female"
    assert entries[1]["resource"]["type"] == "history" and entries[1]["resource"]["total"] == 2
    assert entries[2]["response"]["status"] == "404 Not Found"
