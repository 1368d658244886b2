"""Version-aware writes (If-Match) and conditional reads (If-None-Match, If-Modified-Since)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from email.utils import format_datetime, parsedate_to_datetime
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from tests.api import examples


def _create(client: TestClient) -> str:
    return client.post("/Patient", json=examples.patient()).json()["id"]


def test_update_with_matching_if_match_succeeds(client: TestClient) -> None:
    rid = _create(client)
    response = client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid}, headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"2"'


def test_update_with_stale_if_match_returns_412(client: TestClient) -> None:
    rid = _create(client)
    client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid})
    response = client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid, "gender": "male"},
                          headers={"If-Match": 'W/"1"'})
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{rid}").json()["gender"] == "female"


def test_patch_and_delete_honour_if_match(client: TestClient) -> None:
    rid = _create(client)
    patch = [{"op": "replace", "path": "/gender", "value": "male"}]
    stale = client.patch(f"/Patient/{rid}", json=patch, headers={"If-Match": 'W/"9"',
                                                                 "Content-Type": "application/json-patch+json"})
    assert stale.status_code == 412
    assert client.delete(f"/Patient/{rid}", headers={"If-Match": 'W/"9"'}).status_code == 412
    assert client.get(f"/Patient/{rid}").status_code == 200
    assert client.delete(f"/Patient/{rid}", headers={"If-Match": 'W/"1"'}).status_code == 200


def test_malformed_if_match_returns_400(client: TestClient) -> None:
    rid = _create(client)
    response = client.put(f"/Patient/{rid}", json={**examples.patient(), "id": rid}, headers={"If-Match": "abc"})
    assert response.status_code == 400


def test_if_none_match_with_current_version_returns_304(client: TestClient) -> None:
    rid = _create(client)
    for header in ('W/"1"', "1", '"1"'):
        response = client.get(f"/Patient/{rid}", headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
    assert client.get(f"/Patient/{rid}", headers={"If-None-Match": 'W/"2"'}).status_code == 200


def test_if_modified_since_returns_304_when_unchanged(client: TestClient) -> None:
    rid = _create(client)
    read = client.get(f"/Patient/{rid}")
    last_modified = read.headers["Last-Modified"]
    assert client.get(f"/Patient/{rid}", headers={"If-Modified-Since": last_modified}).status_code == 304
    earlier = format_datetime(parsedate_to_datetime(last_modified) - timedelta(seconds=5), usegmt=True)
    assert client.get(f"/Patient/{rid}", headers={"If-Modified-Since": earlier}).status_code == 200


def test_twenty_concurrent_updates_with_the_same_if_match_let_exactly_one_win(live_server) -> None:
    server = live_server()
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        rid = http.post("/Patient", json=examples.patient()).json()["id"]

    def attempt(i: int) -> int:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as http:
            body = {**examples.patient(), "id": rid, "birthDate": f"19{50 + i}-01-01"}
            return http.put(f"/Patient/{rid}", json=body, headers={"If-Match": 'W/"1"'}).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = sorted(pool.map(attempt, range(20)))
    assert statuses == [200] + [412] * 19
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        current = http.get(f"/Patient/{rid}").json()
        assert current["meta"]["versionId"] == "2"
        assert http.get(f"/Patient/{rid}/_history").json()["total"] == 2


def test_if_match_with_a_huge_version_returns_412_and_a_non_ascii_one_400(client: TestClient) -> None:
    rid = _create(client)
    body = {**examples.patient(), "id": rid}
    assert client.put(f"/Patient/{rid}", json=body, headers={"If-Match": 'W/"999999999999999999"'}).status_code == 412
    assert client.put(f"/Patient/{rid}", json=body, headers={"If-Match": 'W/"99999999999999999999"'}).status_code == 400
    assert client.put(f"/Patient/{rid}", json=body, headers={"If-Match": 'W/"\u00b2"'.encode("latin-1")}).status_code == 400
    assert client.get(f"/Patient/{rid}").json()["meta"]["versionId"] == "1"
