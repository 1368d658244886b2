"""Formats, preferences, base URLs and bad input: what every FHIR client relies on."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api import examples


def test_prefer_return_minimal_has_no_body_but_keeps_headers(client: TestClient) -> None:
    response = client.post("/Patient", json=examples.patient(), headers={"Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["Location"].startswith("http://testserver/Patient/")
    assert response.headers["ETag"] == 'W/"1"'


def test_prefer_return_operation_outcome(client: TestClient) -> None:
    response = client.post("/Patient", json=examples.patient(), headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 201
    assert response.json()["resourceType"] == "OperationOutcome"
    represented = client.post("/Patient", json=examples.patient(), headers={"Prefer": "return=representation"})
    assert represented.json()["resourceType"] == "Patient"


def test_plain_json_bodies_and_format_parameters_are_accepted(client: TestClient) -> None:
    response = client.post("/Patient?_format=json", json=examples.patient(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201
    rid = response.json()["id"]
    for fmt in ("json", "application/fhir+json", "application/json"):
        assert client.get(f"/Patient/{rid}", params={"_format": fmt}).status_code == 200
    assert client.get(f"/Patient/{rid}", headers={"Accept": "application/fhir+json"}).status_code == 200
    assert client.get(f"/Patient/{rid}", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}).status_code == 200


def test_pretty_output_is_indented_and_equal(client: TestClient) -> None:
    rid = client.post("/Patient", json=examples.patient()).json()["id"]
    plain = client.get(f"/Patient/{rid}")
    pretty = client.get(f"/Patient/{rid}?_pretty=true")
    assert b"\n  " in pretty.content and b"\n" not in plain.content
    assert pretty.json() == plain.json()


def test_xml_is_refused_with_an_outcome(client: TestClient) -> None:
    rid = client.post("/Patient", json=examples.patient()).json()["id"]
    assert client.get(f"/Patient/{rid}", params={"_format": "xml"}).status_code == 406
    refused = client.get(f"/Patient/{rid}", headers={"Accept": "application/fhir+xml"})
    assert refused.status_code == 406
    assert refused.json()["resourceType"] == "OperationOutcome"
    posted = client.post("/Patient", content=b"<Patient xmlns='http://hl7.org/fhir'/>",
                         headers={"Content-Type": "application/fhir+xml"})
    assert posted.status_code == 415
    assert posted.json()["resourceType"] == "OperationOutcome"
    assert client.post("/Patient", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415


def test_malformed_json_returns_400_and_stores_nothing(client: TestClient) -> None:
    for body in (b"{", b'{"resourceType": "Patient",}', b"[1, 2]", b"", b"\xff\xfe"):
        response = client.post("/Patient", content=body, headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 400, body
        assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/Patient").json()["total"] == 0


def test_oversized_body_returns_413_and_stores_nothing(make_client) -> None:
    client = make_client(max_body_bytes=2048)
    big = {**examples.patient(), "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                          + "x" * 4096 + "</div>"}}
    response = client.post("/Patient", json=big)
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"

    def chunks():
        yield b'{"resourceType":"Patient","text":{"status":"generated","div":"'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}}'

    streamed = client.post("/Patient", content=chunks(), headers={"Content-Type": "application/fhir+json"})
    assert streamed.status_code == 413
    assert client.get("/Patient").json()["total"] == 0
    assert client.post("/Patient", json=examples.patient()).status_code == 201


def test_base_url_works_with_and_without_trailing_slash(client: TestClient) -> None:
    rid = client.post("/Patient/", json=examples.patient()).json()["id"]
    assert client.get(f"/Patient/{rid}/").status_code == 200
    assert client.get("/metadata/").status_code == 200
    response = client.get("/Patient/", follow_redirects=False)
    assert response.status_code == 200


def test_links_follow_forwarded_headers(client: TestClient) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "fhir.example.in"}
    response = client.post("/Patient", json=examples.patient(), headers=headers)
    assert response.headers["Location"].startswith("https://fhir.example.in/Patient/")
    bundle = client.get("/Patient?_count=1", headers=headers).json()
    assert all(link["url"].startswith("https://fhir.example.in/Patient") for link in bundle["link"])
    assert bundle["entry"][0]["fullUrl"].startswith("https://fhir.example.in/Patient/")


def test_configured_base_url_wins(make_client) -> None:
    client = make_client(base_url="https://nhcx.example.in/fhir/")
    response = client.post("/Patient", json=examples.patient())
    assert response.headers["Location"].startswith("https://nhcx.example.in/fhir/Patient/")


def test_unknown_paths_and_methods_return_outcomes(client: TestClient) -> None:
    response = client.get("/Patient/1/2/3/4")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    response = client.post("/Patient/123", json={})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
