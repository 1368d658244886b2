"""Document bundles stored at /Bundle: the document rules, the byte-exact round trip of NRCeS
discharge summaries, and finding a patient's documents."""

from __future__ import annotations

import copy

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.api import nrces


def _without_meta(raw: bytes) -> bytes:
    document = orjson.loads(raw)
    document.pop("meta", None)
    return orjson.dumps(document)


def total(client: TestClient, query: str) -> int:
    response = client.get(f"/Bundle?{query}&_total=accurate")
    assert response.status_code == 200, response.text
    return response.json()["total"]


def test_discharge_summary_round_trips_byte_for_byte_apart_from_meta(client: TestClient) -> None:
    document = nrces.discharge_summary()
    sent = orjson.dumps(document)
    response = client.put(f"/Bundle/{document['id']}", content=sent, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 201, response.text
    read = client.get(f"/Bundle/{document['id']}")
    assert _without_meta(read.content) == _without_meta(sent)
    meta = read.json()["meta"]
    assert meta["versionId"] == "1" and meta["profile"] == document["meta"]["profile"]


def test_posted_document_is_stored_with_a_server_id(client: TestClient) -> None:
    document = nrces.discharge_summary()
    response = client.post("/Bundle", json=document)
    assert response.status_code == 201, response.text
    stored = client.get(f"/Bundle/{response.json()['id']}").json()
    assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == {
        k: v for k, v in document.items() if k not in ("id", "meta")}


def _broken(change) -> dict:  # noqa: ANN001 - a function editing the document in place
    document = nrces.discharge_summary()
    change(document)
    return document


@pytest.mark.parametrize("document, expression", [
    (_broken(lambda d: d["entry"].reverse()), "Bundle.entry[0]"),
    (_broken(lambda d: d.pop("identifier")), "Bundle.identifier"),
    (_broken(lambda d: d.pop("timestamp")), "Bundle.timestamp"),
    (_broken(lambda d: d["entry"].pop(1)), "Bundle.entry[0].resource.subject.reference"),
    (_broken(lambda d: d["entry"][2].update(fullUrl=d["entry"][1]["fullUrl"])), "Bundle.entry[2].fullUrl"),
    (_broken(lambda d: d["entry"][5]["resource"]["subject"].update(reference="Patient/elsewhere")),
     "Bundle.entry[5].resource.subject.reference"),
], ids=["composition-not-first", "no-identifier", "no-timestamp", "dangling-reference", "duplicate-fullUrl",
        "reference-outside"])
def test_document_breaking_the_rules_gets_422_naming_the_element(client: TestClient, document: dict,
                                                                 expression: str) -> None:
    response = client.post("/Bundle", json=document)
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(expression in issue.get("expression", []) for issue in outcome["issue"]), outcome
    assert total(client, "type=document") == 0


def test_relative_references_resolve_against_restful_fullurls(client: TestClient) -> None:
    document = nrces.discharge_summary()
    base = "https://hip.example.in/fhir"
    for entry in document["entry"]:
        resource = entry["resource"]
        entry["fullUrl"] = f"{base}/{resource['resourceType']}/{resource['id']}"
    text = orjson.dumps(document).decode()
    for entry in document["entry"]:
        resource = entry["resource"]
        text = text.replace(f'"urn:uuid:{resource["id"]}"', f'"{resource["resourceType"]}/{resource["id"]}"')
    assert client.post("/Bundle", json=orjson.loads(text)).status_code == 201


def test_documents_are_searchable_by_identifier_type_timestamp_and_composition(client: TestClient) -> None:
    first = client.post("/Bundle", json=nrces.discharge_summary("ds-1", "11111111-1111-4111-8111-111111111111")).json()
    other = nrces.discharge_summary("ds-2", "22222222-2222-4222-8222-222222222222", health_id="91-5006-4247-3341",
                                    patient_id="other-patient")
    other["timestamp"] = "2025-06-01T08:00:00+05:30"
    other["entry"][0]["resource"]["id"] = "other-composition"
    other["entry"][0]["fullUrl"] = "urn:uuid:other-composition"
    client.post("/Bundle", json=other)
    client.post("/Bundle", json={"resourceType": "Bundle", "type": "collection", "entry": []})
    assert total(client, "identifier=http://hip.in|11111111-1111-4111-8111-111111111111") == 1
    assert total(client, "type=document") == 2
    assert total(client, "timestamp=ge2026-01-01") == 1
    assert total(client, "timestamp=lt2026-01-01&type=document") == 1
    assert total(client, f"composition=Composition/{nrces.COMPOSITION}") == 1
    assert total(client, "composition.type=http://snomed.info/sct|373942005") == 2
    found = client.get(f"/Bundle?composition.subject=Patient/{nrces.PATIENT}").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [first["id"]]
    assert total(client, "composition.subject=Patient/other-patient") == 1
    assert total(client, "composition.subject=Patient/nobody") == 0


def test_a_patients_documents_are_found_through_the_stored_patient(client: TestClient) -> None:
    """With the Patient also stored under the id the document uses, a chain from the composition's
    subject reaches the patient's own search parameters (here the ABHA number)."""
    document = nrces.discharge_summary()
    patient = copy.deepcopy(document["entry"][1]["resource"])
    assert client.put(f"/Patient/{patient['id']}", json=patient).status_code == 201
    client.post("/Bundle", json=document)
    query = f"composition.subject:Patient.identifier=https://healthid.abdm.gov.in|{nrces.HEALTH_ID}"
    assert total(client, query) == 1
    assert total(client, "composition.subject:Patient.identifier=https://healthid.abdm.gov.in|91-0000-0000-0000") == 0
    # without the type: the chain goes to every type a Composition's subject may be that has an identifier
    assert total(client, f"composition.subject.identifier=https://healthid.abdm.gov.in|{nrces.HEALTH_ID}") == 1


def test_transaction_and_collection_bundles_stored_at_bundle_are_not_checked_as_documents(client: TestClient) -> None:
    collection = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": {"resourceType": "Patient",
                                          "managingOrganization": {"reference": "urn:uuid:x"}}}]}
    assert client.post("/Bundle", json=collection).status_code == 201
