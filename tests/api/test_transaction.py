"""Transaction bundles: all or nothing, the spec's processing order, urn:uuid and conditional
references, every conditional entry kind, concurrency."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
from fastapi.testclient import TestClient

from tests.api import examples
from tests.conftest import stored_versions

HEALTH_ID = "https://healthid.abdm.gov.in"
IDENT = f"{HEALTH_ID}|91-5006-4247-3341"


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"],
                                                               **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(url: str, resource: dict[str, Any], **request: str) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": url, **request}}


def json_patch(url: str, operations: list[dict[str, Any]], **request: str) -> dict[str, Any]:
    data = base64.b64encode(orjson.dumps(operations)).decode()
    return {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
            "request": {"method": "PATCH", "url": url, **request}}


def request(method: str, url: str, **extra: str) -> dict[str, Any]:
    return {"request": {"method": method, "url": url, **extra}}


def ok(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    return body["entry"]


def total(client: TestClient, path: str) -> int:
    """The number of matches (or of versions, for a history path); ``path`` may carry a query."""
    if path.endswith("_history"):
        parts = [p for p in path.split("/")[:-1] if p]
        return stored_versions(client, *parts)
    return client.get(f"{path}{'&' if '?' in path else '?'}_count=0&_total=accurate").json()["total"]


def created_id(entry: dict[str, Any]) -> str:
    return entry["response"]["location"].split("/")[1]


def test_urn_uuid_references_are_replaced_at_any_depth(client: TestClient) -> None:
    observation = examples.blood_pressure("x")
    observation["subject"] = {"reference": "urn:uuid:4c1a9a6e-0000-4000-8000-000000000001"}
    observation["performer"] = [{"reference": "urn:oid:1.2.3.4"}]
    observation["extension"] = [{"url": "https://example.org/recorded-at", "valueReference": {
        "reference": "urn:uuid:4c1a9a6e-0000-4000-8000-000000000001"}}]
    observation["contained"] = [{"resourceType": "Provenance", "id": "p", "recorded": "2026-01-10T09:10:00+05:30",
                                 "target": [{"reference": "urn:uuid:4c1a9a6e-0000-4000-8000-000000000001"}],
                                 "agent": [{"who": {"reference": "urn:oid:1.2.3.4"}}]}]
    entries = ok(client.post("/", json=transaction(
        post(observation, "urn:uuid:4c1a9a6e-0000-4000-8000-000000000009"),
        post(examples.patient(), "urn:uuid:4c1a9a6e-0000-4000-8000-000000000001"),
        post(examples.practitioner(), "urn:oid:1.2.3.4"),
    )))
    obs_id, patient_id, practitioner_id = (created_id(e) for e in entries)
    stored = client.get(f"/Observation/{obs_id}").json()
    assert stored["subject"] == {"reference": f"Patient/{patient_id}"}
    assert stored["performer"] == [{"reference": f"Practitioner/{practitioner_id}"}]
    assert stored["extension"][0]["valueReference"] == {"reference": f"Patient/{patient_id}"}
    assert stored["contained"][0]["target"] == [{"reference": f"Patient/{patient_id}"}]
    assert stored["contained"][0]["agent"][0]["who"] == {"reference": f"Practitioner/{practitioner_id}"}
    assert total(client, f"/Observation?subject=Patient/{patient_id}") == 1


def test_response_has_status_location_etag_last_modified_in_request_order(client: TestClient) -> None:
    existing = client.post("/Patient", json=examples.patient("91-1111-1111-1111")).json()
    doomed = client.post("/Practitioner", json=examples.practitioner()).json()
    entries = ok(client.post("/", json=transaction(
        request("GET", f"Patient/{existing['id']}"),
        put(f"Patient/{existing['id']}", {**examples.patient("91-1111-1111-1111"), "id": existing["id"],
                                          "gender": "other"}),
        post(examples.organization()),
        request("DELETE", f"Practitioner/{doomed['id']}"),
    )))
    read, updated, created, deleted = entries
    # GET runs after the writes, so it reads the updated version
    assert read["response"]["status"] == "200 OK"
    assert read["resource"]["gender"] == "other" and read["response"]["etag"] == 'W/"2"'
    assert updated["response"]["status"] == "200 OK"
    assert updated["response"]["location"] == f"Patient/{existing['id']}/_history/2"
    assert created["response"]["status"] == "201 Created"
    assert created["response"]["location"].startswith("Organization/")
    assert created["response"]["location"].endswith("/_history/1")
    assert created["response"]["etag"] == 'W/"1"'
    assert created["response"]["lastModified"].endswith("Z")
    assert created["fullUrl"] == f"http://testserver/{created['response']['location'].rsplit('/_history', 1)[0]}"
    assert deleted["response"]["status"] == "204 No Content"
    assert client.get(f"/Practitioner/{doomed['id']}").status_code == 410


def test_base_url_with_and_without_trailing_slash(client: TestClient) -> None:
    assert client.post("http://testserver", json=transaction(post(examples.patient()))).status_code == 200
    assert client.post("http://testserver/", json=transaction(post(examples.organization()))).status_code == 200
    assert total(client, "/Patient") == 1 and total(client, "/Organization") == 1


def test_one_failing_entry_leaves_the_store_unchanged(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    versions_before = total(client, "/_history")
    bad = examples.blood_pressure(patient["id"])
    bad["status"] = 7
    response = client.post("/", json=transaction(
        put(f"Patient/{patient['id']}", {**patient, "gender": "other"}),
        post(examples.organization(), "urn:uuid:00000000-0000-4000-8000-0000000000aa"),
        request("DELETE", f"Patient/{patient['id']}"),
        post(bad, "urn:uuid:00000000-0000-4000-8000-0000000000bb"),
    ))
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[3]" in outcome["issue"][0]["diagnostics"]
    assert "urn:uuid:00000000-0000-4000-8000-0000000000bb" in outcome["issue"][0]["diagnostics"]
    assert "Bundle.entry[3].resource.status" in outcome["issue"][0]["expression"]
    assert total(client, "/_history") == versions_before
    assert total(client, "/Organization") == 0
    assert client.get(f"/Patient/{patient['id']}").json() == patient
    assert total(client, f"/Patient/{patient['id']}/_history") == 1


def test_a_failing_write_after_earlier_writes_rolls_them_back_with_its_status(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    response = client.post("/", json=transaction(
        post(examples.organization()),
        post(examples.practitioner()),
        put(f"Patient/{patient['id']}", {**patient, "gender": "male"}, ifMatch='W/"7"'),
    ))
    assert response.status_code == 412
    assert "Bundle.entry[2]" in response.json()["issue"][0]["diagnostics"]
    assert total(client, "/Organization") == 0 and total(client, "/Practitioner") == 0
    assert client.get(f"/Patient/{patient['id']}").json()["meta"]["versionId"] == "1"


def test_if_none_exist_reuses_the_existing_resource_and_its_references_point_at_it(client: TestClient) -> None:
    existing = client.post("/Patient", json=examples.patient()).json()
    observation = {**examples.blood_pressure("x"), "subject": {"reference": "urn:uuid:aaaaaaaa-0000-4000-8000-0"}}
    entries = ok(client.post("/", json=transaction(
        post(examples.patient(), "urn:uuid:aaaaaaaa-0000-4000-8000-0", ifNoneExist=f"identifier={IDENT}"),
        post(observation),
    )))
    assert entries[0]["response"]["status"] == "200 OK"
    assert created_id(entries[0]) == existing["id"]
    assert client.get(f"/Observation/{created_id(entries[1])}").json()["subject"]["reference"] == \
        f"Patient/{existing['id']}"
    assert total(client, "/Patient") == 1


def test_if_none_exist_creates_when_nothing_matches_and_412_when_several_do(client: TestClient) -> None:
    first = transaction(post(examples.patient(), ifNoneExist=f"Patient?identifier={IDENT}"))
    entries = ok(client.post("/", json=first))
    assert entries[0]["response"]["status"] == "201 Created"
    client.post("/Patient", json=examples.patient())
    response = client.post("/", json=transaction(post(examples.patient(), ifNoneExist=f"identifier={IDENT}")))
    assert response.status_code == 412
    assert total(client, "/Patient") == 2


def test_if_match_on_update_patch_and_delete(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    org = client.post("/Organization", json=examples.organization()).json()
    doc = client.post("/Practitioner", json=examples.practitioner()).json()
    entries = ok(client.post("/", json=transaction(
        put(f"Patient/{patient['id']}", {**patient, "gender": "other"}, ifMatch='W/"1"'),
        json_patch(f"Organization/{org['id']}", [{"op": "replace", "path": "/active", "value": False}],
                   ifMatch='W/"1"'),
        request("DELETE", f"Practitioner/{doc['id']}", ifMatch='W/"1"'),
    )))
    assert [e["response"]["status"] for e in entries] == ["200 OK", "200 OK", "204 No Content"]
    assert client.get(f"/Organization/{org['id']}").json()["active"] is False
    stale = client.post("/", json=transaction(
        json_patch(f"Organization/{org['id']}", [{"op": "replace", "path": "/active", "value": True}],
                   ifMatch='W/"1"')))
    assert stale.status_code == 412
    assert client.get(f"/Organization/{org['id']}").json()["active"] is False


def test_if_none_match_on_put_and_on_get(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    refused = client.post("/", json=transaction(put(f"Patient/{patient['id']}", {**patient, "gender": "other"},
                                                    ifNoneMatch="*")))
    assert refused.status_code == 412
    entries = ok(client.post("/", json=transaction(
        put("Patient/brand-new", {**examples.patient("91-2222-2222-2222"), "id": "brand-new"}, ifNoneMatch="*"),
        request("GET", f"Patient/{patient['id']}", ifNoneMatch='W/"1"'),
    )))
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "304 Not Modified"
    assert "resource" not in entries[1]


def test_conditional_put_url_creates_then_updates_the_match(client: TestClient) -> None:
    entries = ok(client.post("/", json=transaction(put(f"Patient?identifier={IDENT}", examples.patient()))))
    assert entries[0]["response"]["status"] == "201 Created"
    rid = created_id(entries[0])
    entries = ok(client.post("/", json=transaction(put(f"Patient?identifier={IDENT}", {**examples.patient(),
                                                                                       "gender": "other"}))))
    assert created_id(entries[0]) == rid and entries[0]["response"]["etag"] == 'W/"2"'
    assert client.get(f"/Patient/{rid}").json()["gender"] == "other"


def test_conditional_delete_url_deletes_the_single_match_and_fails_without_one(client: TestClient) -> None:
    org = client.post("/Organization", json=examples.organization()).json()
    entries = ok(client.post("/", json=transaction(
        request("DELETE", "Organization?identifier=https://facility.abdm.gov.in|IN0510000183"))))
    assert entries[0]["response"]["status"] == "204 No Content"
    assert client.get(f"/Organization/{org['id']}").status_code == 410
    response = client.post("/", json=transaction(
        post(examples.patient()),
        request("DELETE", "Organization?identifier=https://facility.abdm.gov.in|IN0510000183")))
    assert response.status_code == 404
    assert total(client, "/Patient") == 0


def test_conditional_put_with_several_matches_fails_the_transaction_with_412(client: TestClient) -> None:
    client.post("/Patient", json=examples.patient())
    client.post("/Patient", json=examples.patient())
    response = client.post("/", json=transaction(post(examples.organization()),
                                                 put(f"Patient?identifier={IDENT}", examples.patient())))
    assert response.status_code == 412
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert total(client, "/Organization") == 0


def test_conditional_references_resolve_inside_the_transaction(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    observation = {**examples.blood_pressure("x"), "subject": {"reference": f"Patient?identifier={IDENT}"}}
    entries = ok(client.post("/", json=transaction(post(observation))))
    assert client.get(f"/Observation/{created_id(entries[0])}").json()["subject"] == {
        "reference": f"Patient/{patient['id']}"}
    missing = {**examples.blood_pressure("x"), "subject": {"reference": f"Patient?identifier={HEALTH_ID}|nobody"}}
    assert client.post("/", json=transaction(post(missing))).status_code == 404
    client.post("/Patient", json=examples.patient())
    response = client.post("/", json=transaction(post(examples.organization()), post(observation)))
    assert response.status_code == 412
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert total(client, "/Observation") == 1 and total(client, "/Organization") == 0


def test_patch_entry_with_json_patch_binary(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    entries = ok(client.post("/", json=transaction(
        json_patch(f"Patient/{patient['id']}", [{"op": "replace", "path": "/gender", "value": "other"}]))))
    assert entries[0]["response"]["location"] == f"Patient/{patient['id']}/_history/2"
    assert client.get(f"/Patient/{patient['id']}").json()["gender"] == "other"


def test_conditional_patch_url_patches_the_single_match(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    entries = ok(client.post("/", json=transaction(
        json_patch(f"Patient?identifier={IDENT}", [{"op": "replace", "path": "/gender", "value": "other"}]))))
    assert entries[0]["response"]["location"] == f"Patient/{patient['id']}/_history/2"
    missing = transaction(json_patch(f"Patient?identifier={HEALTH_ID}|nobody", [{"op": "remove", "path": "/gender"}]))
    assert client.post("/", json=missing).status_code == 404


def test_capability_statement_lists_transaction_batch_and_the_operations(client: TestClient) -> None:
    rest = client.get("/metadata").json()["rest"][0]
    assert {"transaction", "batch"} <= {i["code"] for i in rest["interaction"]}
    operations = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in rest["resource"]}
    assert operations["Patient"] == {"everything", "validate"}
    assert operations["Composition"] == {"document", "validate"}
    assert operations["Observation"] == {"validate"}


def test_two_entries_for_one_resource_are_refused(client: TestClient) -> None:
    patient = client.post("/Patient", json=examples.patient()).json()
    response = client.post("/", json=transaction(
        put(f"Patient/{patient['id']}", {**patient, "gender": "other"}),
        request("DELETE", f"Patient/{patient['id']}"),
    ))
    assert response.status_code == 400
    assert client.get(f"/Patient/{patient['id']}").json()["meta"]["versionId"] == "1"


def test_get_entries_search_and_read_after_the_writes(client: TestClient) -> None:
    entries = ok(client.post("/", json=transaction(
        request("GET", f"Patient?identifier={IDENT}"),
        post(examples.patient()),
    )))
    search = entries[0]["resource"]
    assert search["type"] == "searchset" and search["total"] == 1
    assert search["entry"][0]["resource"]["id"] == created_id(entries[1])


def test_prefer_return_minimal_leaves_out_the_resources(client: TestClient) -> None:
    entries = ok(client.post("/", json=transaction(post(examples.patient())), headers={"Prefer": "return=minimal"}))
    assert "resource" not in entries[0]
    assert entries[0]["response"]["status"] == "201 Created"


def test_bad_bundles_get_400_operation_outcomes(client: TestClient) -> None:
    cases = [
        b"not json",
        b"[1, 2]",
        orjson.dumps(examples.patient()),
        orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}),
        orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": {"request": {}}}),
        orjson.dumps(transaction({"resource": examples.patient()})),
        orjson.dumps(transaction("entry")),
        orjson.dumps(transaction({"resource": examples.patient(), "request": {"method": "FETCH", "url": "Patient"}})),
        orjson.dumps(transaction({"resource": examples.patient(), "request": {"method": "POST"}})),
        orjson.dumps(transaction({"resource": "Patient", "request": {"method": "POST", "url": "Patient"}})),
        orjson.dumps(transaction({"resource": examples.patient(),
                                  "request": {"method": "POST", "url": "Patient/1/x/y"}})),
        orjson.dumps(transaction({"resource": examples.patient(), "request": {"method": "POST",
                                                                              "url": "Observation"}})),
        orjson.dumps(transaction({"request": {"method": "PUT", "url": "Patient/1"}})),
        orjson.dumps(transaction({"request": {"method": "GET", "url": "Patient?birthdate=notadate"}})),
        orjson.dumps(transaction({"request": {"method": "GET", "url": "Patient/1/$everything"}})),
        orjson.dumps(transaction({"request": {"method": "POST", "url": "https://elsewhere.example/Patient"},
                                  "resource": examples.patient()})),
        orjson.dumps(transaction({"request": {"method": "DELETE", "url": "Patient"}})),
        orjson.dumps(transaction({"request": {"method": "PATCH", "url": "Patient/1"}, "resource": examples.patient()})),
        orjson.dumps(transaction({"request": {"method": "POST", "url": "Patient", "ifNoneExist": 3},
                                  "resource": examples.patient()})),
    ]
    for body in cases:
        response = client.post("/", content=body, headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 400, (body, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert total(client, "/_history") == 0


def test_unknown_type_in_an_entry_is_404(client: TestClient) -> None:
    response = client.post("/", json=transaction({"request": {"method": "GET", "url": "Unicorn/1"}}))
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_concurrent_transactions_with_the_same_conditional_create_leave_one_resource(live_server) -> None:
    server = live_server()
    body = transaction(post(examples.patient(), "urn:uuid:bbbbbbbb-0000-4000-8000-0",
                            ifNoneExist=f"identifier={IDENT}"),
                       post({**examples.blood_pressure("x"),
                             "subject": {"reference": "urn:uuid:bbbbbbbb-0000-4000-8000-0"}}))

    def attempt(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as http:
            return http.post("/", json=body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(attempt, range(8)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    statuses = sorted(r.json()["entry"][0]["response"]["status"] for r in responses)
    assert statuses == ["200 OK"] * 7 + ["201 Created"]
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        assert http.get("/Patient", params={"_total": "accurate"}).json()["total"] == 1
        patient_id = responses[0].json()["entry"][0]["response"]["location"].split("/")[1]
        observations = http.get("/Observation", params={"subject": f"Patient/{patient_id}", "_total": "accurate",
                                                         "_count": 0}).json()
        assert observations["total"] == 8


def test_concurrent_transactions_patching_one_resource_lose_no_update(live_server) -> None:
    server = live_server()
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        patient = http.post("/Patient", json=examples.patient()).json()

    def attempt(n: int) -> httpx.Response:
        identifier = {"system": "https://example.org/n", "value": str(n)}
        operation = [{"op": "add", "path": "/identifier/-", "value": identifier}]
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as http:
            return http.post("/", json=transaction(json_patch(f"Patient/{patient['id']}", operation),
                                                   post(examples.organization())))

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(attempt, range(6)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        final = http.get(f"/Patient/{patient['id']}").json()
    assert final["meta"]["versionId"] == "7"
    assert sorted(i["value"] for i in final["identifier"][1:]) == [str(n) for n in range(6)]
