"""The Synthea transaction bundles of ../shared/data/synthea, posted as they are: every bundle ingests,
every urn:uuid reference becomes a readable resource, and $everything returns each patient's record.

All 24 bundles run on SQLite; the MongoDB backends (SecantusDB is an in-process test server, slow on
large transactions) take the two smallest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import SHARED

SYNTHEA = SHARED / "data" / "synthea"
BUNDLES = sorted(SYNTHEA.glob("*.json"), key=lambda p: p.stat().st_size) if SYNTHEA.is_dir() else []

pytestmark = pytest.mark.skipif(not BUNDLES, reason="../shared/data/synthea is not present")


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "reference" and isinstance(v, str)] + [
            r for k, v in node.items() if k != "reference" for r in _references(v)]
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []


def _ingest(client: TestClient, path: Path) -> tuple[dict[str, Any], list[str]]:
    bundle = orjson.loads(path.read_bytes())
    response = client.post("/", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json",
                                                                     "Prefer": "return=minimal"})
    assert response.status_code == 200, (path.name, response.text[:1000])
    entries = response.json()["entry"]
    assert len(entries) == len(bundle["entry"])
    assert all(e["response"]["status"] == "201 Created" for e in entries)
    return bundle, [e["response"]["location"].rsplit("/_history/", 1)[0] for e in entries]


def _stored(client: TestClient) -> dict[str, dict[str, Any]]:
    """Every stored resource by ``Type/id``, walked from the system history (one version each here)."""
    found: dict[str, dict[str, Any]] = {}
    url: str | None = "/_history?_count=1000"
    while url:
        page = client.get(url).json()
        for entry in page.get("entry", []):
            resource = entry["resource"]
            found[f"{resource['resourceType']}/{resource['id']}"] = resource
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    return found


def _check_references(stored: dict[str, dict[str, Any]], bundle: dict[str, Any], created: list[str]) -> None:
    """Each entry's urn:uuid references now name the resource created for that fullUrl, and that
    resource is stored (``#`` references point into the resource's own contained resources)."""
    assigned = {entry["fullUrl"]: key for entry, key in zip(bundle["entry"], created, strict=True)}
    for entry, key in zip(bundle["entry"], created, strict=True):
        expected = [assigned.get(r, r) for r in _references(entry["resource"])]
        assert _references(stored[key]) == expected, key
        for reference in expected:
            assert reference.startswith("#") or reference in stored, (key, reference)


def test_every_bundle_ingests_and_every_reference_resolves(client: TestClient, store_url: str) -> None:
    bundles = BUNDLES if store_url.startswith("sqlite") else BUNDLES[:2]
    ingested = [_ingest(client, path) for path in bundles]
    stored = _stored(client)
    assert len(stored) == sum(len(created) for _, created in ingested)
    for bundle, created in ingested:
        _check_references(stored, bundle, created)
    sample = [created[len(created) // 2] for _, created in ingested]
    assert all(client.get(f"/{key}").json() == stored[key] for key in sample)
    assert client.get("/Patient?_total=accurate&_count=0").json()["total"] == len(bundles)


def test_everything_returns_every_resource_posted_for_the_patient(client: TestClient) -> None:
    _, created = _ingest(client, BUNDLES[0])
    patient = next(k for k in created if k.startswith("Patient/"))
    seen: list[str] = []
    url: str | None = f"/{patient}/$everything?_count=200"
    while url:
        page = client.get(url).json()
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert seen[0] == patient
    assert sorted(seen) == sorted(created)
