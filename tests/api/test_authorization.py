"""Authorization on the FHIR API: tokens, the patient compartment, record holders, scopes, and the
audit trail of patient-data reads (issue 5).

Facility A and facility B are EHR systems (role ``system``) registered for different facilities;
both write through the same server. Patients and an administrator get their own tokens.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from consent.policy import HOLDER_SYSTEM
from tests.conftest import SYSTEM_SCOPES, facility_token
from tests.consent.kit import bearer, mint_token

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def anonymous(make_client: Any) -> TestClient:
    return make_client(token=False)


@pytest.fixture
def world(anonymous: TestClient) -> dict[str, Any]:
    """Two facilities' systems, one patient each (with an Observation), and the tokens to use."""
    app = anonymous.app
    a, b = bearer(facility_token(app, "fac-a")), bearer(facility_token(app, "fac-b"))

    def create(headers: dict[str, str], resource: dict[str, Any]) -> str:
        response = anonymous.post(f"/{resource['resourceType']}", json=resource, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    pa = create(a, {"resourceType": "Patient", "name": [{"family": "Verma"}],
                    "identifier": [{"system": "urn:mrn", "value": "A-1"}]})
    pb = create(b, {"resourceType": "Patient", "name": [{"family": "Verma"}],
                    "identifier": [{"system": "urn:mrn", "value": "B-1"}]})
    oa = create(a, {"resourceType": "Observation", "status": "final", "code": {"text": "BP"},
                    "subject": {"reference": f"Patient/{pa}"}})
    ob = create(b, {"resourceType": "Observation", "status": "final", "code": {"text": "BP"},
                    "subject": {"reference": f"Patient/{pb}"}})
    # facility B also treated A's patient: its Observation is about pa but held by B
    ob_about_pa = create(b, {"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
                             "subject": {"reference": f"Patient/{pa}"}})
    org = create(a, {"resourceType": "Organization", "name": "PHC Samastipur"})
    return {"a": a, "b": b, "pa": pa, "pb": pb, "oa": oa, "ob": ob, "ob_about_pa": ob_about_pa, "org": org,
            "patient_a": bearer(mint_token(app, "patient", subject="acct-pa", patient_id=pa)),
            "admin": bearer(mint_token(app, "admin", subject="acct-admin"))}


def ids(bundle: dict[str, Any], resource_type: str | None = None) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if resource_type is None or e["resource"]["resourceType"] == resource_type}


def _flush(client: TestClient) -> None:
    client.app.state.authorization.audit.flush()  # type: ignore[attr-defined]


# --- authentication --------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/Patient/x"), ("GET", "/Patient"), ("POST", "/Patient"), ("PUT", "/Patient/x"),
    ("DELETE", "/Patient/x"), ("GET", "/_history"), ("POST", "/"), ("GET", "/Patient/x/$everything"),
    ("POST", "/Patient/$validate"), ("GET", "/"),
])
def test_every_interaction_without_a_token_is_401_with_a_bearer_challenge(anonymous: TestClient, method: str,
                                                                           path: str) -> None:
    response = anonymous.request(method, path, json={"resourceType": "Patient"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="fhir-server"')
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "login"


def test_metadata_and_well_known_need_no_token(anonymous: TestClient) -> None:
    assert anonymous.get("/metadata").status_code == 200
    assert anonymous.get("/.well-known/smart-configuration").status_code == 200
    assert anonymous.get("/.well-known/jwks.json").status_code == 200


def _forge(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _unsigned(token: str) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    return f"{header}.{token.split('.')[1]}."


@pytest.mark.parametrize("kind", ["garbage", "forged-role", "alg-none", "wrong-audience", "basic-auth"])
def test_bad_tokens_are_401_invalid_token(anonymous: TestClient, kind: str) -> None:
    good = mint_token(anonymous.app, "patient", patient_id="p1")  # type: ignore[arg-type]
    header = {
        "garbage": "Bearer not-a-jwt",
        "forged-role": f"Bearer {_forge(good, role='admin')}",
        "alg-none": f"Bearer {_unsigned(good)}",
        "wrong-audience": f"Bearer {_forge(good, aud='https://elsewhere.example')}",
        "basic-auth": "Basic dXNlcjpwYXNz",
    }[kind]
    response = anonymous.get("/Organization", headers={"Authorization": header})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_request"' if kind == "basic-auth" else 'error="invalid_token"') in challenge


def test_an_expired_token_is_401(settings: Any) -> None:
    from dataclasses import replace

    from fhir_server.app import create_app
    from tests.consent.fakes import FakeClock

    clock = FakeClock()
    with TestClient(create_app(replace(settings, access_token_seconds=60), clock=clock)) as client:
        token = facility_token(client.app)  # type: ignore[arg-type]
        assert client.get("/Organization", headers=bearer(token)).status_code == 200
        clock.advance(seconds=61 + 10)
        response = client.get("/Organization", headers=bearer(token))
        assert response.status_code == 401
        assert "expired" in response.headers["WWW-Authenticate"]


def test_capability_statement_points_to_the_security_endpoints(anonymous: TestClient) -> None:
    security = anonymous.get("/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == "http://testserver/auth/token"
    assert anonymous.get("/.well-known/smart-configuration").json()["token_endpoint"] == uris["token"]


# --- record holders --------------------------------------------------------------------------------

def test_writes_are_labelled_with_the_writers_facility_and_clients_cannot_forge_the_label(
        anonymous: TestClient, world: dict[str, Any]) -> None:
    body = {"resourceType": "Patient", "meta": {"security": [
        {"system": HOLDER_SYSTEM, "code": "Organization/fac-b"},
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}}
    created = anonymous.post("/Patient", json=body, headers=world["a"])
    assert created.status_code == 201
    security = created.json()["meta"]["security"]
    assert {"system": HOLDER_SYSTEM, "code": "Organization/fac-a", "display": "record holder"} in security
    assert all(c["code"] != "Organization/fac-b" for c in security)
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"} in security
    # B cannot read it, however the label was meant
    assert anonymous.get(f"/Patient/{created.json()['id']}", headers=world["b"]).status_code == 403
    # an update that drops the label keeps it
    patient_id = created.json()["id"]
    updated = anonymous.put(f"/Patient/{patient_id}", json={"resourceType": "Patient", "id": patient_id},
                            headers=world["a"])
    assert updated.status_code == 200
    assert any(c.get("code") == "Organization/fac-a" for c in updated.json()["meta"]["security"])


def test_staff_read_what_their_facility_holds_and_get_403_for_the_rest(anonymous: TestClient,
                                                                       world: dict[str, Any]) -> None:
    a, pa, pb = world["a"], world["pa"], world["pb"]
    assert anonymous.get(f"/Patient/{pa}", headers=a).status_code == 200
    assert anonymous.get(f"/Observation/{world['oa']}", headers=a).status_code == 200
    refused = anonymous.get(f"/Patient/{pb}", headers=a)
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["code"] == "forbidden"
    assert "consent" in refused.json()["issue"][0]["diagnostics"]
    assert anonymous.get(f"/Observation/{world['ob_about_pa']}", headers=a).status_code == 403
    assert anonymous.get(f"/Patient/{pb}/_history/1", headers=a).status_code == 403
    assert anonymous.get(f"/Patient/{pb}/_history", headers=a).status_code == 403
    # resources that are not patient data are shared
    assert anonymous.get(f"/Organization/{world['org']}", headers=world["b"]).status_code == 200


def test_searches_see_only_the_facilitys_records(anonymous: TestClient, world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    assert ids(anonymous.get("/Patient?family=Verma", headers=a).json()) == {world["pa"]}
    assert ids(anonymous.get("/Patient?family=Verma", headers=b).json()) == {world["pb"]}
    assert anonymous.get("/Patient?family=Verma", headers=b).json()["total"] == 1
    assert ids(anonymous.get("/Observation", headers=a).json()) == {world["oa"]}
    assert anonymous.get("/Observation", headers=a).json()["total"] == 1
    about_pa = anonymous.get(f"/Observation?subject=Patient/{world['pa']}", headers=b).json()
    assert ids(about_pa) == {world["ob_about_pa"]} and about_pa["total"] == 1  # counted past a's record
    # compartment search, system search, _include and _revinclude keep to the same rows
    assert ids(anonymous.get(f"/Patient/{world['pa']}/Observation", headers=a).json()) == {world["oa"]}
    assert ids(anonymous.get("/?_type=Patient,Observation", headers=b).json()) == \
        {world["pb"], world["ob"], world["ob_about_pa"]}
    included = anonymous.get("/Observation?_include=Observation:subject", headers=b).json()
    assert ids(included, "Patient") == {world["pb"]}
    revincluded = anonymous.get("/Patient?_revinclude=Observation:subject", headers=a).json()
    assert ids(revincluded, "Observation") == {world["oa"]}


def test_chains_and_has_do_not_reach_other_facilities_records(anonymous: TestClient, world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    # B's Observation about A's patient exists, but A cannot find its patient through it
    assert ids(anonymous.get("/Patient?_has:Observation:subject:code:text=HbA1c", headers=a).json()) == set()
    assert ids(anonymous.get("/Patient?_has:Observation:subject:code:text=BP", headers=a).json()) == {world["pa"]}
    # a chain only matches targets the caller may see
    assert ids(anonymous.get("/Observation?subject:Patient.family=Verma", headers=b).json()) == {world["ob"]}
    assert ids(anonymous.get("/Observation?subject:Patient.identifier=urn:mrn|B-1", headers=b).json()) == \
        {world["ob"]}


def test_an_untyped_chain_reaches_only_the_target_types_the_caller_may_read(anonymous: TestClient,
                                                                            world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    ward = anonymous.post("/Location", headers=a, json={"resourceType": "Location", "name": "Verma Ward"}).json()["id"]
    about_ward = anonymous.post("/Observation", headers=a, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "BP"},
        "subject": {"reference": f"Location/{ward}"}}).json()["id"]
    # subject.family: only a Patient has it; subject.name: a Patient or a Location
    assert ids(anonymous.get("/Observation?subject.family=Verma", headers=a).json()) == {world["oa"]}
    assert ids(anonymous.get("/Observation?subject.name=Verma", headers=a).json()) == {world["oa"], about_ward}
    assert ids(anonymous.get("/Observation?subject.name=Verma", headers=b).json()) == {world["ob"]}

    def scoped(*scopes: str) -> dict[str, str]:
        return bearer(mint_token(anonymous.app, "system", subject="lab", facility_id="fac-a",  # type: ignore[arg-type]
                                 scopes=("system/Observation.read", *scopes)))

    # a client that may not read Patients searches the Locations alone
    response = anonymous.get("/Observation?subject.name=Verma", headers=scoped("system/Location.read"))
    assert response.status_code == 200 and ids(response.json()) == {about_ward}
    response = anonymous.get("/Observation?subject.name=Verma", headers=scoped("system/Patient.read"))
    assert response.status_code == 200 and ids(response.json()) == {world["oa"]}
    refused = anonymous.get("/Observation?subject.name=Verma", headers=scoped())
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["diagnostics"] == \
        "your token's scopes do not cover reading Location resources"
    # a typed chain, and a chain further on, into a type the scopes do not cover are refused as well
    for query, scopes, uncovered in (("subject:Location.name=Verma", (), "Location"),
                                     ("subject:Patient.organization.name=Verma", ("system/Patient.read",),
                                      "Organization")):
        refused = anonymous.get(f"/Observation?{query}", headers=scoped(*scopes))
        assert refused.status_code == 403, query
        assert refused.json()["issue"][0]["diagnostics"] == \
            f"your token's scopes do not cover reading {uncovered} resources"
    response = anonymous.get("/Observation?subject:Location.name=Verma", headers=scoped("system/Location.read"))
    assert response.status_code == 200 and ids(response.json()) == {about_ward}


def test_history_lists_only_the_facilitys_versions(anonymous: TestClient, world: dict[str, Any]) -> None:
    type_history = anonymous.get("/Patient/_history", headers=world["a"]).json()
    assert ids(type_history) == {world["pa"]}
    assert "total" not in type_history
    system_history = anonymous.get("/_history", headers=world["b"]).json()
    assert ids(system_history) == {world["pb"], world["ob"], world["ob_about_pa"], world["org"]}


def test_staff_cannot_change_another_facilitys_records(anonymous: TestClient, world: dict[str, Any]) -> None:
    a, pb = world["a"], world["pb"]
    body = {"resourceType": "Patient", "id": pb, "name": [{"family": "Overwritten"}]}
    assert anonymous.put(f"/Patient/{pb}", json=body, headers=a).status_code == 403
    patch = anonymous.patch(f"/Patient/{pb}", json=[{"op": "replace", "path": "/active", "value": False}],
                            headers={**a, "Content-Type": "application/json-patch+json"})
    assert patch.status_code == 403
    assert anonymous.delete(f"/Patient/{pb}", headers=a).status_code == 403
    # conditional interactions do not see it either: the conditional update creates A's own record
    conditional = anonymous.put("/Patient?identifier=urn:mrn|B-1", headers=a, json={
        "resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "B-1"}]})
    assert conditional.status_code == 201
    stored = anonymous.get(f"/Patient/{pb}", headers=world["b"]).json()
    assert stored["name"] == [{"family": "Verma"}] and stored["meta"]["versionId"] == "1"


def test_a_transaction_runs_under_the_callers_policy(anonymous: TestClient, world: dict[str, Any]) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{world['pb']}"}},
    ]}
    response = anonymous.post("/", json=bundle, headers=world["a"])
    assert response.status_code == 403
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{world['pb']}"}},
        {"request": {"method": "GET", "url": f"Patient/{world['pa']}"}},
    ]}
    entries = anonymous.post("/", json=batch, headers=world["a"]).json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["403", "200"]


def test_everything_holds_only_the_facilitys_part_of_the_record(anonymous: TestClient,
                                                                world: dict[str, Any]) -> None:
    record = anonymous.get(f"/Patient/{world['pa']}/$everything", headers=world["a"]).json()
    assert ids(record) == {world["pa"], world["oa"]}
    assert anonymous.get(f"/Patient/{world['pa']}/$everything", headers=world["b"]).status_code == 403


# --- patients, administrators, scopes ---------------------------------------------------------------

def test_a_patient_reads_their_own_compartment_from_every_facility(anonymous: TestClient,
                                                                   world: dict[str, Any]) -> None:
    me = world["patient_a"]
    assert anonymous.get(f"/Patient/{world['pa']}", headers=me).status_code == 200
    assert anonymous.get(f"/Patient/{world['pb']}", headers=me).status_code == 403
    assert ids(anonymous.get("/Patient", headers=me).json()) == {world["pa"]}
    assert ids(anonymous.get("/Observation", headers=me).json()) == {world["oa"], world["ob_about_pa"]}
    assert anonymous.get(f"/Observation/{world['ob_about_pa']}", headers=me).status_code == 200
    assert anonymous.get(f"/Observation/{world['ob']}", headers=me).status_code == 403
    assert anonymous.get(f"/Organization/{world['org']}", headers=me).status_code == 200
    record = anonymous.get(f"/Patient/{world['pa']}/$everything", headers=me).json()
    assert ids(record) == {world["pa"], world["oa"], world["ob_about_pa"]}


def test_a_patient_cannot_write(anonymous: TestClient, world: dict[str, Any]) -> None:
    me = world["patient_a"]
    response = anonymous.post("/Observation", headers=me, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": f"Patient/{world['pa']}"}})
    assert response.status_code == 403
    assert anonymous.put(f"/Patient/{world['pa']}", headers=me,
                         json={"resourceType": "Patient", "id": world["pa"]}).status_code == 403


def test_an_administrator_manages_the_directory_but_reads_no_patient_data(anonymous: TestClient,
                                                                          world: dict[str, Any]) -> None:
    admin = world["admin"]
    assert anonymous.post("/Organization", headers=admin,
                          json={"resourceType": "Organization", "name": "CHC"}).status_code == 201
    assert anonymous.get(f"/Patient/{world['pa']}", headers=admin).status_code == 403
    assert anonymous.get("/Observation", headers=admin).status_code == 403
    assert anonymous.post("/Patient", headers=admin, json={"resourceType": "Patient"}).status_code == 403


def test_scopes_limit_a_system_to_its_resource_types_and_actions(anonymous: TestClient,
                                                                  world: dict[str, Any]) -> None:
    token = mint_token(anonymous.app, "system", subject="lab", facility_id="fac-a",  # type: ignore[arg-type]
                       scopes=("system/Observation.read",))
    lab = bearer(token)
    assert anonymous.get(f"/Observation/{world['oa']}", headers=lab).status_code == 200
    assert anonymous.get(f"/Patient/{world['pa']}", headers=lab).status_code == 403
    response = anonymous.post("/Observation", headers=lab, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert response.status_code == 403
    assert "scopes" in response.json()["issue"][0]["diagnostics"] or \
        "not permitted" in response.json()["issue"][0]["diagnostics"]
    assert set(SYSTEM_SCOPES) == {"system/*.read", "system/*.write"}


# --- audit -------------------------------------------------------------------------------------------

def test_staff_reads_of_patient_data_are_audited_for_the_patient_to_see(anonymous: TestClient,
                                                                       world: dict[str, Any]) -> None:
    _flush(anonymous)
    me = world["patient_a"]
    before = anonymous.get("/AuditEvent", headers=me).json().get("total", 0)
    assert anonymous.get(f"/Patient/{world['pa']}", headers=world["a"]).status_code == 200
    assert anonymous.get("/Observation?code:text=BP", headers=world["a"]).status_code == 200
    anonymous.get("/Organization", headers=world["a"])  # not patient data: not audited
    _flush(anonymous)
    events = anonymous.get("/AuditEvent?_sort=-_lastUpdated", headers=me).json()
    assert events["total"] == before + 2
    newest = {e["resource"]["subtype"][0]["code"]: e["resource"] for e in events["entry"][:2]}
    search, read = newest["search-type"], newest["read"]  # stored in one batch: same lastUpdated
    assert read["subtype"][0]["code"] == "read" and read["action"] == "R"
    assert {"reference": f"Patient/{world['pa']}"} in [e["what"] for e in read["entity"]]
    assert read["agent"][0]["who"]["identifier"]["value"] == "ehr-fac-a"
    assert read["agent"][1]["who"] == {"reference": "Organization/fac-a"}
    assert search["subtype"][0]["code"] == "search-type"
    (shown,) = [e for e in search["entity"] if e["what"] == {"reference": f"Patient/{world['pa']}"}]
    assert {"type": "disclosed", "valueString": f"Observation/{world['oa']}"} in shown["detail"]
    # another patient sees none of it; staff cannot read the trail
    _flush(anonymous)
    other = bearer(mint_token(anonymous.app, "patient", subject="acct-pb",  # type: ignore[arg-type]
                              patient_id=world["pb"]))
    other_events = anonymous.get("/AuditEvent", headers=other).json()
    assert all(f"Patient/{world['pb']}" in orjson.dumps(e["resource"]).decode() for e in other_events.get("entry", []))
    assert ids(anonymous.get("/AuditEvent", headers=world["a"]).json()) == set()


def test_the_audit_trail_is_append_only(anonymous: TestClient, world: dict[str, Any]) -> None:
    anonymous.get(f"/Patient/{world['pa']}", headers=world["a"])
    _flush(anonymous)
    event = anonymous.get("/AuditEvent", headers=world["patient_a"]).json()["entry"][0]["resource"]
    for headers in (world["a"], world["patient_a"], world["admin"]):
        assert anonymous.post("/AuditEvent", headers=headers, json={**event, "id": None}).status_code == 403
        assert anonymous.put(f"/AuditEvent/{event['id']}", headers=headers, json=event).status_code == 403
        assert anonymous.delete(f"/AuditEvent/{event['id']}", headers=headers).status_code == 403


def test_audit_events_are_written_in_the_background(anonymous: TestClient, world: dict[str, Any]) -> None:
    _flush(anonymous)
    me = world["patient_a"]
    before = anonymous.get("/AuditEvent", headers=me).json().get("total", 0)
    anonymous.get(f"/Patient/{world['pa']}", headers=world["a"])
    deadline = time.monotonic() + 10
    while anonymous.get("/AuditEvent", headers=me).json().get("total", 0) == before:
        assert time.monotonic() < deadline, "the audit writer never stored the event"
        time.sleep(0.05)


def test_a_token_signed_by_another_server_is_401(anonymous: TestClient, tmp_path: Any) -> None:
    from fhir_server.app import create_app
    from fhir_server.settings import Settings

    with TestClient(create_app(Settings(store_url=f"sqlite:///{tmp_path}/other.db"))) as other:
        foreign = facility_token(other.app)  # type: ignore[arg-type]
    response = anonymous.get("/Organization", headers=bearer(foreign))
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_the_servers_audit_writer_process_stores_events_too(make_client: Any, store_url: str) -> None:
    """``serve`` writes the trail from a process of its own (``audit_writer=process``)."""
    if not store_url.startswith("sqlite"):
        pytest.skip("the writer process is the same code on every backend; one is enough here")
    client = make_client(token=False, audit_writer="process")
    staff = bearer(facility_token(client.app, "fac-a"))
    patient_id = client.post("/Patient", json={"resourceType": "Patient"}, headers=staff).json()["id"]
    me = bearer(mint_token(client.app, "patient", patient_id=patient_id))  # type: ignore[arg-type]
    for _ in range(3):
        assert client.get(f"/Patient/{patient_id}", headers=staff).status_code == 200
    assert client.app.state.authorization.audit.flush() == 3  # type: ignore[attr-defined]
    assert client.get("/AuditEvent", headers=me).json()["total"] == 3
    client.get(f"/Patient/{patient_id}", headers=staff)
    client.app.state.authorization.audit.close()  # type: ignore[attr-defined]  # stores what is queued
    assert client.get("/AuditEvent", headers=me).json()["total"] == 4


def test_the_writer_process_stores_a_full_batch_before_its_interval_is_up(make_client: Any,
                                                                         store_url: str) -> None:
    """At a high read rate the writer stores every ``audit_batch_events`` events, not only once a
    second: here the interval is 10 minutes, so only the batch size can have stored them."""
    if not store_url.startswith("sqlite"):
        pytest.skip("the writer process is the same code on every backend; one is enough here")
    client = make_client(token=False, audit_writer="process", audit_flush_seconds=600.0, audit_batch_events=3)
    staff = bearer(facility_token(client.app, "fac-a"))
    patient_id = client.post("/Patient", json={"resourceType": "Patient"}, headers=staff).json()["id"]
    me = bearer(mint_token(client.app, "patient", patient_id=patient_id))  # type: ignore[arg-type]
    for _ in range(3):
        assert client.get(f"/Patient/{patient_id}", headers=staff).status_code == 200
    deadline = time.monotonic() + 20
    while client.get("/AuditEvent", headers=me).json().get("total", 0) < 3:
        assert time.monotonic() < deadline, "a full batch waited for the flush interval"
        time.sleep(0.05)
    client.get(f"/Patient/{patient_id}", headers=staff)  # one event: stays queued until close
    time.sleep(0.5)
    assert client.get("/AuditEvent", headers=me).json()["total"] == 3
    client.app.state.authorization.audit.close()  # type: ignore[attr-defined]
    assert client.get("/AuditEvent", headers=me).json()["total"] == 4


def test_a_recreated_id_does_not_reveal_the_earlier_holders_versions(anonymous: TestClient,
                                                                    world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    anonymous.put("/Patient/shared-id", json={"resourceType": "Patient", "id": "shared-id",
                                              "name": [{"family": "Secret"}]}, headers=a)
    assert anonymous.delete("/Patient/shared-id", headers=a).status_code in (200, 204)
    recreated = anonymous.put("/Patient/shared-id", json={"resourceType": "Patient", "id": "shared-id"}, headers=b)
    assert recreated.status_code == 201
    history = anonymous.get("/Patient/shared-id/_history", headers=b).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3"]
    assert "Secret" not in orjson.dumps(history).decode()
    assert anonymous.get("/Patient/shared-id/_history/1", headers=b).status_code == 403
    own = anonymous.get("/Patient/shared-id/_history", headers=a).json()
    assert [e["request"]["method"] for e in own["entry"]] == ["DELETE", "POST"]  # its own versions only


def test_one_event_per_request_and_each_patient_sees_only_their_part(anonymous: TestClient,
                                                                    world: dict[str, Any]) -> None:
    a = world["a"]
    other = anonymous.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Verma"}]},
                           headers=a).json()["id"]
    _flush(anonymous)
    me = world["patient_a"]
    before = anonymous.get("/AuditEvent", headers=me).json().get("total", 0)
    assert ids(anonymous.get("/Patient?family=Verma", headers=a).json()) == {world["pa"], other}
    _flush(anonymous)
    events = anonymous.get("/AuditEvent?_sort=-_lastUpdated", headers=me).json()
    assert events["total"] == before + 1
    event = events["entry"][0]["resource"]
    assert [e["what"]["reference"] for e in event["entity"]] == [f"Patient/{world['pa']}"]
    assert other not in orjson.dumps(events).decode()
    stored = anonymous.get(f"/AuditEvent/{event['id']}", headers=me).json()
    assert other not in orjson.dumps(stored).decode()
    # the other patient's view of the same event names only them
    theirs = bearer(mint_token(anonymous.app, "patient", subject="acct-o", patient_id=other))  # type: ignore[arg-type]
    their_event = anonymous.get(f"/AuditEvent/{event['id']}", headers=theirs).json()
    assert [e["what"]["reference"] for e in their_event["entity"]] == [f"Patient/{other}"]


@pytest.mark.parametrize("query", [
    "AuditEvent?entity=Patient/{other}", "AuditEvent?patient=Patient/{other}", "AuditEvent?entity-type=1",
    "AuditEvent?_sort=entity", "Patient/{other}/AuditEvent", "Patient?_has:AuditEvent:patient:outcome=0",
])
def test_patients_cannot_search_their_trail_by_other_entities(anonymous: TestClient, world: dict[str, Any],
                                                             query: str) -> None:
    response = anonymous.get("/" + query.format(other=world["pb"]), headers=world["patient_a"])
    assert response.status_code == 403, response.text


def test_patients_search_their_trail_by_date_and_agent(anonymous: TestClient, world: dict[str, Any]) -> None:
    anonymous.get(f"/Patient/{world['pa']}", headers=world["a"])
    _flush(anonymous)
    me = world["patient_a"]
    assert anonymous.get("/AuditEvent?date=ge2020-01-01&subtype=read", headers=me).json()["total"] >= 1
    assert anonymous.get(f"/Patient/{world['pa']}/AuditEvent", headers=me).status_code == 200
    assert anonymous.get("/AuditEvent?agent=Organization/fac-a", headers=me).json()["total"] >= 1
