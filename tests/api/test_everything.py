"""``Patient/[id]/$everything``: the patient's compartment plus the practitioners, organizations,
medications and locations it references, with ``_type``, ``_since`` and paging."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tests.api import examples


def _create(client: TestClient, resource: dict) -> str:
    response = client.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return f"{resource['resourceType']}/{response.json()['id']}"


def _record(client: TestClient, patient_id: str, query: str = "") -> dict:
    response = client.get(f"/Patient/{patient_id}/$everything{query}")
    assert response.status_code == 200, response.text
    return response.json()


def _keys(bundle: dict) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])]


def _population(client: TestClient) -> tuple[str, set[str]]:
    organization = _create(client, examples.organization())
    practitioner = _create(client, examples.practitioner())
    family_doctor = _create(client, {**examples.practitioner(), "name": [{"text": "Dr. Meera Nair"}]})
    patient = _create(client, {**examples.patient(), "generalPractitioner": [{"reference": family_doctor}]})
    pid = patient.split("/")[1]
    medication = _create(client, {"resourceType": "Medication", "code": {"text": "Amlodipine 5 mg"}})
    location = _create(client, {"resourceType": "Location", "name": "OPD 2"})
    encounter = examples.encounter(pid)
    encounter["participant"] = [{"individual": {"reference": practitioner}}]
    encounter["serviceProvider"] = {"reference": organization}
    encounter["location"] = [{"location": {"reference": location}}]
    request = examples.medication_request(pid)
    request.pop("medicationCodeableConcept")
    request["medicationReference"] = {"reference": medication}
    mine = {patient, practitioner, family_doctor, organization, medication, location,
            _create(client, encounter), _create(client, examples.blood_pressure(pid)), _create(client, request),
            _create(client, {"resourceType": "AllergyIntolerance", "patient": {"reference": patient},
                             "code": {"text": "Cashew nuts"}})}
    other = _create(client, examples.patient("91-0000-0000-0001", "Verma")).split("/")[1]
    _create(client, examples.blood_pressure(other))
    _create(client, examples.practitioner())  # referenced by nobody
    return pid, mine


def test_everything_returns_the_compartment_and_what_it_references(client: TestClient) -> None:
    pid, mine = _population(client)
    record = _record(client, pid)
    assert record["type"] == "searchset" and record["total"] == len(mine)
    keys = _keys(record)
    assert keys[0] == f"Patient/{pid}"
    assert set(keys) == mine and len(keys) == len(mine)


def test_type_filter_and_since(client: TestClient) -> None:
    pid, mine = _population(client)
    assert set(_keys(_record(client, pid, "?_type=Observation,Practitioner"))) == {
        k for k in mine if k.split("/")[0] in ("Observation", "Practitioner")}
    time.sleep(0.01)
    marker = client.post("/Observation", json=examples.blood_pressure(pid)).json()
    since = marker["meta"]["lastUpdated"]
    assert _keys(_record(client, pid, f"?_since={since}")) == [f"Observation/{marker['id']}"]


def test_paging_walks_every_resource_once(client: TestClient) -> None:
    pid, mine = _population(client)
    seen: list[str] = []
    page = _record(client, pid, "?_count=2")
    while True:
        seen += _keys(page)
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        assert following[0].startswith("http://testserver/Patient/")
        page = client.get(following[0]).json()
    assert sorted(seen) == sorted(mine)


def test_unknown_patient_and_bad_parameters(client: TestClient) -> None:
    assert client.get("/Patient/nobody/$everything").status_code == 404
    pid = _create(client, examples.patient()).split("/")[1]
    for query in ("?_count=-1", "?_since=yesterday", "?_type=Unicorn", "?colour=blue"):
        response = client.get(f"/Patient/{pid}/$everything{query}")
        assert response.status_code == 400, query
        assert response.json()["resourceType"] == "OperationOutcome"
