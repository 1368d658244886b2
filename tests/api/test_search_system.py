"""System search (``GET /?_type=...``) and ``POST /Type/_search`` with a form body, which must answer
exactly as the GET with the same parameters."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.api.ncd_clinic import HBA1C, Clinic


def test_system_search_over_named_types(clinic: Clinic) -> None:
    assert clinic.found("?_type=Patient,Practitioner&name=kumar") == {"ravi", "dr-kumar"}
    assert clinic.found("/?_type=Patient,Practitioner&gender=female") == {"asha", "zoe", "meena", "nurse-devi"}
    assert clinic.found(f"/?_type=Patient,Observation&_id={clinic.id('asha')},{clinic.id('a1c-asha')}") == {
        "asha", "a1c-asha"}


def test_system_search_over_every_type_with_common_parameters(clinic: Clinic) -> None:
    assert clinic.found(f"/?_id={clinic.id('q-cbac')}") == {"q-cbac"}
    assert clinic.found("/?_tag=https://ncd.example.in/tags|ncd-screened") == {"asha"}


def test_a_parameter_not_shared_by_every_named_type_is_reported(clinic: Clinic) -> None:
    bundle = clinic.search("/?_type=Patient,Observation&code=x")
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"
    assert clinic.status("/?_type=Patient,Observation&code=x", prefer="handling=strict") == 400
    assert clinic.status("/?_type=Patient,Spaceship") == 400


@pytest.mark.parametrize("query", [
    f"code={HBA1C}&_sort=date",
    "subject:Patient.name=sharma&_count=2",
    "component-code-value-quantity=8480-6$ge140&_include=Observation:subject&_total=accurate",
])
def test_post_search_with_a_form_body_equals_get(clinic: Clinic, query: str) -> None:
    got = clinic.search(f"Observation?{query}")
    posted = clinic.client.post("Observation/_search", content=query.replace("$", "%24").replace("+", "%2B"),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert posted.status_code == 200, posted.text
    posted_bundle = posted.json()
    assert [e["fullUrl"] for e in posted_bundle["entry"]] == [e["fullUrl"] for e in got["entry"]]
    assert posted_bundle.get("total") == got.get("total")
    assert [link["relation"] for link in posted_bundle["link"]] == [link["relation"] for link in got["link"]]
    assert urlsplit(posted_bundle["link"][0]["url"]).path == "/Observation"


def test_post_search_combines_query_and_body_and_refuses_other_content(clinic: Clinic) -> None:
    response = clinic.client.post(f"Observation/_search?code={HBA1C}", content=f"subject={clinic.ref('asha')}",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert clinic.labels(response.json()) == {"a1c-asha"}
    refused = clinic.client.post("Observation/_search", json={"code": HBA1C})
    assert refused.status_code == 415
    system = clinic.client.post("/_search", content="_type=Patient&name=zoe",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert clinic.labels(system.json()) == {"zoe"}
