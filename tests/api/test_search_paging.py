"""Paging: absolute links with the effective ``_count``, and walks at ``_count=7`` that return every
match exactly once while other clients create, update and delete matching resources between the
page requests (the guarantee stated in ``fhir_server.service.paging``)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from fhir_server.service import paging
from tests.api.ncd_clinic import BP_PANEL, LOINC, UCUM, concept

Between = Callable[[int, list[str]], None]


def bp(patient_id: str, day: int, systolic: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final",
        "code": concept(LOINC, BP_PANEL, "Blood pressure panel"),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"2026-01-{day:02d}T09:00:00+05:30",
        "component": [{"code": concept(LOINC, "8480-6", "Systolic blood pressure"),
                       "valueQuantity": {"value": systolic, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}],
    }


def create(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def update(client: TestClient, resource_id: str, resource: dict[str, Any]) -> None:
    response = client.put(f"/Observation/{resource_id}", json={**resource, "id": resource_id})
    assert response.status_code == 200, response.text


@pytest.fixture
def ward(client: TestClient) -> tuple[TestClient, str, dict[str, dict[str, Any]]]:
    """30 blood pressures of one patient on days 1..30 (one a day), by id."""
    patient = create(client, {"resourceType": "Patient", "name": [{"family": "Sharma"}]})
    readings = {}
    for day in range(1, 31):
        resource = bp(patient, day, 120 + day)
        readings[create(client, resource)] = resource
    return client, patient, readings


def walk(client: TestClient, url: str, between: Between | None = None,
         relation: str = "next") -> tuple[list[str], list[dict[str, Any]]]:
    """Follows ``relation`` links from ``url``; calls ``between`` after each page."""
    ids: list[str] = []
    bundles = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        bundles.append(bundle)
        page = [e["resource"]["id"] for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"]
        ids += page if relation == "next" else list(reversed(page))
        if between:
            between(len(bundles), ids)
        url = next((link["url"] for link in bundle["link"] if link["relation"] == relation), "")
    return ids, bundles


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def test_walking_every_page_returns_every_match_once(ward) -> None:
    client, patient, readings = ward
    ids, bundles = walk(client, f"/Observation?subject=Patient/{patient}&_count=7")
    assert sorted(ids) == sorted(readings) and len(bundles) == 5
    assert [len(b["entry"]) for b in bundles] == [7, 7, 7, 7, 2]
    assert {b["total"] for b in bundles} == {30}


@pytest.mark.parametrize("sort", ["", "&_sort=-date", "&_sort=_lastUpdated", "&_sort=-_lastUpdated,date"])
def test_walking_backwards_with_previous_links_returns_the_same_pages(ward, sort: str) -> None:
    client, patient, _ = ward
    forward, bundles = walk(client, f"/Observation?subject=Patient/{patient}&_count=7{sort}")
    backward, back_bundles = walk(client, links(bundles[-1])["previous"], relation="previous")
    assert list(reversed(backward)) == forward[:-2]
    assert "previous" not in links(back_bundles[-1]) and "next" in links(back_bundles[-1])


def test_links_are_absolute_and_carry_the_effective_count(client: TestClient) -> None:
    for _ in range(3):
        create(client, {"resourceType": "Patient", "gender": "female"})
    bundle = client.get("/Patient?gender=female&_count=2", headers={"X-Forwarded-Proto": "https",
                                                                     "X-Forwarded-Host": "fhir.example.in"}).json()
    for url in links(bundle).values():
        assert url.startswith("https://fhir.example.in/Patient?gender=female")
        assert parse_qs(urlsplit(url).query)["_count"] == ["2"]
    default = client.get("/Patient?gender=female").json()
    assert all(parse_qs(urlsplit(url).query)["_count"] == ["20"] for url in links(default).values())
    assert set(links(default)) == {"self", "first"}
    assert "_cursor" not in links(default)["self"]


def test_count_is_capped_by_the_configured_maximum(make_client) -> None:
    client = make_client(max_count=3)
    for _ in range(5):
        create(client, {"resourceType": "Patient", "gender": "male"})
    bundle = client.get("/Patient?_count=5000").json()
    assert len(bundle["entry"]) == 3
    assert parse_qs(urlsplit(links(bundle)["next"]).query)["_count"] == ["3"]


def test_a_walk_survives_creates_updates_and_deletes_between_pages(ward) -> None:
    client, patient, readings = ward
    original = set(readings)
    deleted: set[str] = set()
    created: set[str] = set()

    def between(page: int, seen: list[str]) -> None:
        unseen = sorted(original - set(seen) - deleted)
        if len(unseen) < 3:
            return
        for day in (1, 15):  # new readings, before and in the middle of the walk order
            created.add(create(client, bp(patient, day, 200)))
        update(client, unseen[0], {**readings[unseen[0]], "status": "amended"})
        update(client, seen[0], {**readings[seen[0]], "status": "amended"})
        for victim in (unseen[1], seen[-1]):
            assert client.delete(f"/Observation/{victim}").status_code == 200
            deleted.add(victim)

    ids, _ = walk(client, f"/Observation?subject=Patient/{patient}&_count=7", between)
    assert len(ids) == len(set(ids)), "no resource twice"
    assert not set(ids) & created, "resources created after the first page stay out"
    must = original - deleted
    assert must <= set(ids), "every match that was not deleted"
    assert set(ids) <= original


@pytest.mark.parametrize(("sort", "margin"), [("-date", True), ("-date", False), ("date", True),
                                             ("_lastUpdated", True)])
def test_a_sorted_walk_survives_updates_that_move_resources_across_the_cursor(ward, monkeypatch, sort: str,
                                                                               margin: bool) -> None:
    """With the margin, every reading of this fast test is "changed" (written after ``stable``) and
    placed by the service; without it, the storage's keyset does the work until the updates."""
    if not margin:
        monkeypatch.setattr(paging, "STABLE_MARGIN", paging.timedelta(0))
    client, patient, readings = ward
    original = set(readings)
    deleted: set[str] = set()
    moved: set[str] = set()

    def between(page: int, seen: list[str]) -> None:
        unseen = [i for i in sorted(original) if i not in seen and i not in deleted and i not in moved]
        if len(unseen) < 2 or not seen:
            return
        # an unseen reading moves to the front of the order (already walked), a seen one to the back
        first, last = (31, 0) if sort.startswith("-") else (0, 31)
        for resource_id, day in ((unseen[0], first), (seen[0], last)):
            update(client, resource_id, bp(patient, max(1, min(day, 30)), 99))
            moved.add(resource_id)
        create(client, bp(patient, 16, 150))
        assert client.delete(f"/Observation/{unseen[1]}").status_code == 200
        deleted.add(unseen[1])

    ids, bundles = walk(client, f"/Observation?subject=Patient/{patient}&_count=7&_sort={sort}", between)
    assert len(ids) == len(set(ids)), "no resource twice"
    assert set(ids) == original - deleted, "every match once, none created during the walk"
    assert len(bundles) >= 4


def test_too_many_changed_resources_expire_a_sorted_walk(ward, monkeypatch) -> None:
    client, patient, readings = ward
    for module in (paging, *_storage_modules()):
        monkeypatch.setattr(module, "CHANGED_LIMIT", 3)
    first = client.get(f"/Observation?subject=Patient/{patient}&_count=7&_sort=date")
    assert first.status_code == 410 and first.json()["issue"][0]["code"] == "expired"


def _storage_modules() -> list[Any]:
    from fhir_server.storage import mongo, sqlite

    return [mongo, sqlite]


def test_a_cursor_of_another_search_or_forged_is_a_bad_request(ward) -> None:
    client, patient, _ = ward
    bundle = client.get(f"/Observation?subject=Patient/{patient}&_count=7&_sort=date").json()
    cursor = parse_qs(urlsplit(links(bundle)["next"]).query)["_cursor"][0]
    assert client.get(f"/Observation?_cursor={cursor}&_sort=-date").status_code == 400
    assert client.get(f"/Observation?_cursor={cursor}").status_code == 400
    for forged in ("x", "e30", "eyJzIjoxfQ", "%00"):
        response = client.get(f"/Observation?_cursor={forged}")
        assert response.status_code == 400 and response.json()["issue"][0]["expression"] == ["_cursor"]


def test_forged_positions_out_of_the_stores_range_are_bad_requests(client: TestClient) -> None:
    def cursor(sort: str, position: str) -> str:
        token = f'{{"s":0,"b":0,"o":"{sort}","a":{position}}}'.encode()
        return base64.urlsafe_b64encode(token).decode()

    for position in ("[9223372036854775808]", "[1.5]", "[null]", "[1e308,1]"):
        assert client.get(f"/Patient?_cursor={cursor('', position)}").status_code == 400, position
    for position in ("[9223372036854775808,1]", '["1980",1]', "[1,[1]]"):
        response = client.get(f"/Patient?_sort=birthdate&_cursor={cursor('birthdate', position)}")
        assert response.status_code == 400, position
