"""``Bundle.total`` (``_total``) and ``_count=0``: counted on the first page and carried by the page
links, capped by ``Settings.total_limit`` unless the client asks for an accurate count."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def patients(client: TestClient, n: int) -> None:
    for i in range(n):
        assert client.post("/Patient", json={"resourceType": "Patient", "gender": "female",
                                             "name": [{"family": f"Devi{i}"}]}).status_code == 201


def get(client: TestClient, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def next_url(bundle: dict[str, Any]) -> str:
    return next(link["url"] for link in bundle["link"] if link["relation"] == "next")


def test_the_first_pages_total_is_carried_by_the_links_and_recounted_when_accurate(client: TestClient) -> None:
    patients(client, 5)
    first = get(client, "/Patient?gender=female&_count=2")
    accurate = get(client, "/Patient?gender=female&_count=2&_total=accurate")
    assert first["total"] == accurate["total"] == 5
    patients(client, 1)  # the walks began before it: neither counts it
    assert get(client, next_url(first))["total"] == 5
    assert get(client, next_url(accurate))["total"] == 5
    assert get(client, "/Patient?gender=female&_count=2")["total"] == 6


def test_total_none_and_count_zero(client: TestClient) -> None:
    patients(client, 3)
    assert "total" not in get(client, "/Patient?_total=none")
    only_total = get(client, "/Patient?_count=0")
    assert only_total["total"] == 3 and only_total["entry"] == []
    assert "total" not in get(client, "/Patient?_count=0&_total=none")
    summary = get(client, "/Patient?_summary=count&_count=2")
    assert summary["total"] == 3 and summary["entry"] == []


def test_large_results_are_counted_only_when_asked(make_client) -> None:
    client = make_client(total_limit=4)
    patients(client, 6)
    assert "total" not in get(client, "/Patient")
    assert "total" not in get(client, "/Patient?_total=estimate")
    assert get(client, "/Patient?_total=accurate")["total"] == 6
    assert get(client, "/Patient?_count=0")["total"] == 6
    assert get(client, "/Patient?family=devi1")["total"] == 1
    assert "total" not in get(client, next_url(get(client, "/Patient?_count=2")))


def test_searches_whose_matches_come_out_of_store_order_are_totalled_alike(make_client) -> None:
    """Prefix and OR searches (matches found out of store order, which SQLite counts while finding
    the page) get the same totals at and around the limit, whatever the page size."""
    client = make_client(total_limit=4)
    patients(client, 6)
    assert "total" not in get(client, "/Patient?family=devi")
    whole = get(client, "/Patient?family=devi&_count=10")
    assert "total" not in whole and len(whole["entry"]) == 6
    assert get(client, "/Patient?family=devi1,devi2,devi3,devi4")["total"] == 4
    first = get(client, "/Patient?family=devi1,devi3,devi5&_count=1")
    assert first["total"] == 3 and len(first["entry"]) == 1
    second = get(client, next_url(first))
    assert second["total"] == 3 and second["entry"][0]["fullUrl"] != first["entry"][0]["fullUrl"]


def test_bad_totals_and_counts_are_bad_requests(client: TestClient) -> None:
    for query in ("_total=some", "_total:x=none", "_count=-1", "_count=ten", "_count=1.5", "_count=٣",
                  "_summary=maybe"):
        response = client.get(f"/Patient?{query}")
        assert response.status_code == 400, query
        assert response.json()["resourceType"] == "OperationOutcome"
