"""``Composition/[id]/$document``: a document assembled from stored resources, optionally persisted."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient

from tests.api import nrces


def _store_parts(client: TestClient) -> dict[str, dict]:
    """The discharge summary's resources stored one by one (PUT with their ids), references made
    relative, plus a second Organization only the Encounter refers to."""
    document = nrces.discharge_summary()
    by_urn = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in document["entry"]}
    text = orjson.dumps(document).decode()
    for urn, relative in by_urn.items():
        text = text.replace(f'"{urn}"', f'"{relative}"')
    resources = [e["resource"] for e in orjson.loads(text)["entry"]]
    resources[4]["serviceProvider"] = {"reference": "Organization/ward-org"}
    resources.append({"resourceType": "Organization", "id": "ward-org", "name": "Medical ward 3"})
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
               for r in resources]
    response = client.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.text
    return {f"{r['resourceType']}/{r['id']}": r for r in resources}


def test_document_holds_the_composition_first_and_everything_it_references(client: TestClient) -> None:
    stored = _store_parts(client)
    client.post("/Patient", json={"resourceType": "Patient", "name": [{"text": "Someone else"}]})
    response = client.get(f"/Composition/{nrces.COMPOSITION}/$document")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["type"] == "document"
    assert document["identifier"]["system"] == "urn:ietf:rfc:3986" and document["timestamp"]
    keys = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in document["entry"]]
    assert keys[0] == f"Composition/{nrces.COMPOSITION}"
    assert set(keys) == set(stored)  # the ward Organization comes in through the Encounter
    assert all(e["fullUrl"] == f"http://testserver/{k}" for e, k in zip(document["entry"], keys, strict=True))
    outcome = client.post("/Bundle/$validate", json=document).json()
    assert outcome["issue"][0]["severity"] == "information", outcome
    assert client.get("/Bundle?_total=accurate").json()["total"] == 0


def test_persist_stores_the_document_and_it_is_found_from_the_patient(client: TestClient) -> None:
    _store_parts(client)
    response = client.get(f"/Composition/{nrces.COMPOSITION}/$document?persist=true")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["meta"]["versionId"] == "1"
    assert response.headers["Location"] == f"http://testserver/Bundle/{document['id']}/_history/1"
    assert client.get(f"/Bundle/{document['id']}").json() == document
    found = client.get(f"/Bundle?composition.subject=Patient/{nrces.PATIENT}").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [document["id"]]


def test_missing_composition_is_404_and_a_missing_reference_422(client: TestClient) -> None:
    assert client.get("/Composition/nope/$document").status_code == 404
    composition = {"resourceType": "Composition", "id": "lonely", "status": "final",
                   "type": {"text": "Discharge summary"}, "date": "2026-01-15", "title": "Discharge Summary",
                   "subject": {"reference": "Patient/missing"}, "author": [{"display": "Dr. Ravi Kumar"}]}
    client.put("/Composition/lonely", json=composition)
    response = client.get("/Composition/lonely/$document")
    assert response.status_code == 422
    assert "Patient/missing" in response.json()["issue"][0]["diagnostics"]
    assert client.get("/Composition/lonely/$document?persist=maybe").status_code == 400
