"""The CapabilityStatement claims exactly what the routes implement."""

from __future__ import annotations

from fastapi.testclient import TestClient

from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir_server.api.routes import ROUTES


def test_metadata_is_a_valid_r4_capability_statement(client: TestClient) -> None:
    response = client.get("/metadata")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/fhir+json; charset=utf-8"
    body = response.json()
    CapabilityStatement.model_validate(body)
    assert body["fhirVersion"] == "4.0.1"
    assert body["implementation"]["url"] == "http://testserver"


def test_every_claimed_interaction_has_a_route(client: TestClient) -> None:
    body = client.get("/metadata").json()
    routed = {code for r in ROUTES for code in (r.interaction, *r.also)}
    rest = body["rest"][0]
    for resource in rest["resource"]:
        assert {i["code"] for i in resource["interaction"]} <= routed
    assert {i["code"] for i in rest["interaction"]} <= routed
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {i["code"] for i in patient["interaction"]} == {
        "read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"}
    assert patient["conditionalCreate"] is True
    assert patient["conditionalDelete"] == "single"
    assert {"identifier", "name", "birthdate", "_id"} <= {p["name"] for p in patient["searchParam"]}


def test_every_r4_resource_type_is_listed(client: TestClient) -> None:
    types = {r["type"] for r in client.get("/metadata").json()["rest"][0]["resource"]}
    assert {"Patient", "Practitioner", "Organization", "Encounter", "Observation", "MedicationRequest", "Claim",
            "ExplanationOfBenefit", "Immunization", "Bundle", "Composition"} <= types
    assert len(types) >= 140
