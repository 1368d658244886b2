"""What is written survives a restart of the server process's app and store."""

from __future__ import annotations

import httpx

from tests.api import examples


def test_resources_and_history_survive_a_restart(live_server) -> None:
    first = live_server()
    with httpx.Client(base_url=first.url, headers=first.headers) as http:
        created = http.post("/Patient", json=examples.patient()).json()
        rid = created["id"]
        http.put(f"/Patient/{rid}", json={**created, "gender": "other"})
    first.stop()

    second = live_server()
    with httpx.Client(base_url=second.url, headers=second.headers) as http:
        read = http.get(f"/Patient/{rid}")
        assert read.status_code == 200
        assert read.json()["gender"] == "other"
        assert read.json()["meta"]["versionId"] == "2"
        assert http.get(f"/Patient/{rid}/_history/1").json()["gender"] == "female"
        assert http.get("/Patient?gender=other").json()["total"] == 1
        assert http.put(f"/Patient/{rid}", json={**created, "gender": "male"}).json()["meta"]["versionId"] == "3"
