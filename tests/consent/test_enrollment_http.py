"""Enrollment over HTTP: the FHIR resources it writes, idempotency, bad rows, who may enroll whom,
and the six-IDs-per-mobile limit."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from consent.health_id import HealthId, luhn_valid
from mappings.abdm import HEALTH_ID_SYSTEM, IDENTIFIER_TYPE_SYSTEM, PRACTITIONER_SYSTEM
from tests.consent.fakes import FakeClock
from tests.consent.kit import IdentityKit, bearer, mint_token


@pytest.fixture
def facility(kit: IdentityKit) -> str:
    return kit.organization()


@pytest.fixture
def admin_token(identity_client: TestClient) -> str:
    return mint_token(identity_client.app, "admin")  # type: ignore[arg-type]


@pytest.fixture
def facility_admin(identity_client: TestClient, facility: str) -> str:
    return mint_token(identity_client.app, "facility-admin", facility_id=facility)  # type: ignore[arg-type]


def test_a_signed_in_facility_administrator_enrolls(kit: IdentityKit, admin_token: str, facility: str) -> None:
    _, token = kit.person(admin_token, facility, role="facility-admin", name="Ravi Kumar", gender="male",
                          birth_date="1975-01-02")
    assert kit.enroll(token, facility)["outcome"] == "created"


def _enroll(client: TestClient, token: str, **body: object):  # noqa: ANN202
    return client.post("/healthid/enrollments", json=body, headers=bearer(token))


def _codes(resource: dict) -> dict[str, dict]:
    return {c["code"]: i for i in resource["identifier"] for c in i.get("type", {}).get("coding", [])}


@pytest.mark.all_backends
def test_enrolling_a_patient_writes_the_patient_and_sends_a_code(identity_client: TestClient, kit: IdentityKit,
                                                                 facility_admin: str, facility: str) -> None:
    response = _enroll(identity_client, facility_admin, name="Asha  Sharma", gender="F", birth_date="5/9/1980",
                       mobile="+91 98765 43210", address="asha.sharma@abdm", external_id="NCD-0042")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["outcome"] == "created" and body["role"] == "patient" and body["address"] == "asha.sharma@abdm"
    health_id = HealthId.parse(body["healthId"])
    assert luhn_valid(health_id.digits) and body["healthId"] == health_id.formatted
    assert "code" not in body.get("setPasswordCode", "").split()  # the code itself is never in the response
    patient = identity_client.get(f"/{body['resource']}", headers=bearer(facility_admin)).json()
    identifiers = _codes(patient)
    assert identifiers["HIN"] == {"type": {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": "HIN",
                                                       "display": "Health ID number"}]},
                                  "system": HEALTH_ID_SYSTEM, "value": health_id.formatted}
    assert identifiers["ABHA"]["value"] == "asha.sharma@abdm" and identifiers["ABHA"]["system"] == HEALTH_ID_SYSTEM
    assert identifiers["MR"]["value"] == "NCD-0042"
    assert patient["name"] == [{"text": "Asha Sharma"}]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1980-09-05")
    assert patient["telecom"] == [{"system": "phone", "value": "+919876543210", "use": "mobile"}]
    assert patient["managingOrganization"] == {"reference": f"Organization/{facility}"}
    found = identity_client.get("/Patient", params={"identifier": f"{HEALTH_ID_SYSTEM}|{health_id.formatted}"},
                                headers=bearer(facility_admin))
    assert found.json()["total"] == 1
    (message,) = kit.identity.store.outbox_messages("+919876543210")
    assert message.purpose == "set-password" and health_id.formatted in message.body


@pytest.mark.all_backends
def test_enrolling_a_practitioner_links_them_to_the_facility(identity_client: TestClient, facility_admin: str,
                                                             facility: str) -> None:
    response = _enroll(identity_client, facility_admin, role="practitioner", name="Dr Meera Iyer", gender="female",
                       birth_date="1985-04-12", mobile="9876500001")
    assert response.status_code == 201
    practitioner = identity_client.get(f"/{response.json()['resource']}", headers=bearer(facility_admin)).json()
    assert practitioner["resourceType"] == "Practitioner"
    hpin = _codes(practitioner)["HPIN"]
    assert hpin["system"] == PRACTITIONER_SYSTEM and hpin["value"] == response.json()["healthId"]
    roles = identity_client.get("/PractitionerRole", params={"practitioner": response.json()["resource"]},
                                headers=bearer(facility_admin)).json()
    (entry,) = roles["entry"]
    assert entry["resource"]["organization"] == {"reference": f"Organization/{facility}"}


@pytest.mark.all_backends
def test_re_enrolling_the_same_person_is_idempotent(identity_client: TestClient, kit: IdentityKit,
                                                    facility_admin: str) -> None:
    row = {"name": "Asha Sharma", "gender": "female", "birth_date": "1980-09-05", "mobile": "9876543210"}
    first = _enroll(identity_client, facility_admin, **row).json()
    again = _enroll(identity_client, facility_admin, **row)
    assert again.status_code == 200
    assert again.json()["outcome"] == "unchanged" and again.json()["healthId"] == first["healthId"]
    assert identity_client.get(f"/{first['resource']}", headers=bearer(facility_admin)).json()["meta"]["versionId"] == "1"
    assert len(kit.identity.store.outbox_messages("+919876543210")) == 1  # no second code


def test_re_enrolling_with_new_details_updates_the_resource(identity_client: TestClient, facility_admin: str) -> None:
    first = _enroll(identity_client, facility_admin, name="Asha Sharma", gender="female", birth_date="1980-09-05",
                    mobile="9876543210", external_id="NCD-1").json()
    again = _enroll(identity_client, facility_admin, name="Asha Verma", gender="female", birth_date="1980-09-05",
                    mobile="9876543210", external_id="NCD-1").json()
    assert again["outcome"] == "updated" and again["healthId"] == first["healthId"]
    assert identity_client.get(f"/{first['resource']}", headers=bearer(facility_admin)).json()["name"] == \
        [{"text": "Asha Verma"}]


@pytest.mark.all_backends
def test_importing_an_existing_health_id_keeps_the_existing_patient(identity_client: TestClient,
                                                                     facility_admin: str) -> None:
    created = identity_client.post("/Patient", json={
        "resourceType": "Patient", "identifier": [{"system": HEALTH_ID_SYSTEM, "value": "91-5006-4247-3341"}],
        "address": [{"city": "Samastipur"}]}, headers=bearer(facility_admin)).json()
    response = _enroll(identity_client, facility_admin, name="Asha Sharma", gender="female",
                       birth_date="1980-09-05", mobile="9876543210", health_id="91500642473341")
    assert response.status_code == 201 and response.json()["resource"] == f"Patient/{created['id']}"
    patient = identity_client.get(f"/Patient/{created['id']}", headers=bearer(facility_admin)).json()
    assert patient["address"] == [{"city": "Samastipur"}] and patient["name"] == [{"text": "Asha Sharma"}]


def test_imported_health_id_failing_luhn_is_a_warning(identity_client: TestClient, facility_admin: str) -> None:
    response = _enroll(identity_client, facility_admin, name="Imported Person", gender="male",
                       birth_date="1970", mobile="9876543211", health_id="91-5006-4247-3342")
    assert response.status_code == 201
    assert response.json()["healthId"] == "91-5006-4247-3342"
    assert "check digit" in response.json()["warnings"][0]


@pytest.mark.parametrize(("row", "message"), [
    ({"gender": "female", "birth_date": "1980-09-05", "mobile": "9876543210"}, "name: required"),
    ({"name": "A B", "gender": "x", "birth_date": "1980-09-05", "mobile": "9876543210"}, "gender"),
    ({"name": "A B", "gender": "female", "birth_date": "31/31/1980", "mobile": "9876543210"}, "birth_date"),
    ({"name": "A B", "gender": "female", "birth_date": "2999-01-01", "mobile": "9876543210"}, "birth_date"),
    ({"name": "A B", "gender": "female", "birth_date": "1980-09-05", "mobile": "12345"}, "mobile"),
    ({"name": "A B", "gender": "female", "birth_date": "1980-09-05"}, "mobile: required"),
    ({"name": "A B", "gender": "female", "birth_date": "1980-09-05", "mobile": "9876543210", "address": "ab@abdm"},
     "address"),
    ({"name": "A B", "gender": "female", "birth_date": "1980-09-05", "mobile": "9876543210",
      "health_id": "1234"}, "health_id"),
    ({"name": "A B", "gender": "female", "birth_date": "1980-09-05", "mobile": "9876543210", "role": "wizard"},
     "role"),
])
def test_bad_rows_are_refused_with_the_reason(identity_client: TestClient, facility_admin: str, row: dict,
                                              message: str) -> None:
    response = _enroll(identity_client, facility_admin, **row)
    assert response.status_code == 400
    assert message in response.json()["issue"][0]["diagnostics"]


@pytest.mark.all_backends
def test_at_most_six_health_ids_per_mobile(identity_client: TestClient, facility_admin: str) -> None:
    for n in range(6):
        assert _enroll(identity_client, facility_admin, name=f"Family Member {n}", gender="other",
                       birth_date=f"{1950 + n}-01-01", mobile="9876543210").status_code == 201
    seventh = _enroll(identity_client, facility_admin, name="Family Member 6", gender="other",
                      birth_date="1990-01-01", mobile="9876543210")
    assert seventh.status_code == 422
    assert "6 health IDs" in seventh.json()["issue"][0]["diagnostics"]


def test_taken_address_is_refused(identity_client: TestClient, facility_admin: str) -> None:
    _enroll(identity_client, facility_admin, name="First", gender="male", birth_date="1970", mobile="9876543210",
            address="same.name@abdm")
    response = _enroll(identity_client, facility_admin, name="Second", gender="male", birth_date="1971",
                       mobile="9876543211", address="same.name@abdm")
    assert response.status_code == 409 and "taken" in response.json()["issue"][0]["diagnostics"]


def test_unknown_facility_is_refused(identity_client: TestClient, admin_token: str) -> None:
    response = _enroll(identity_client, admin_token, facility="no-such-org", name="A B", gender="male",
                       birth_date="1970", mobile="9876543210")
    assert response.status_code == 422 and "not known" in response.json()["issue"][0]["diagnostics"]


def test_enrollment_needs_a_token(identity_client: TestClient) -> None:
    response = identity_client.post("/healthid/enrollments", json={"name": "x"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="fhir-server", error="invalid_token"')
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("role", ["patient", "practitioner", "system"])
def test_only_administrators_enroll(identity_client: TestClient, facility: str, role: str) -> None:
    token = mint_token(identity_client.app, role, facility_id=facility)  # type: ignore[arg-type]
    response = _enroll(identity_client, token, facility=facility, name="A B", gender="male", birth_date="1970",
                       mobile="9876543210")
    assert response.status_code == 403


def test_facility_admin_enrolls_only_at_their_own_facility(identity_client: TestClient, kit: IdentityKit,
                                                           facility_admin: str) -> None:
    elsewhere = kit.organization("CHC Elsewhere")
    response = _enroll(identity_client, facility_admin, facility=elsewhere, name="A B", gender="male",
                       birth_date="1970", mobile="9876543210")
    assert response.status_code == 403


def test_only_an_administrator_enrolls_facility_administrators(identity_client: TestClient,
                                                               facility_admin: str) -> None:
    response = _enroll(identity_client, facility_admin, role="facility-admin", name="A B", gender="male",
                       birth_date="1970", mobile="9876543210")
    assert response.status_code == 403


def test_tampered_or_expired_tokens_get_401(identity_client: TestClient, facility_admin: str,
                                            clock: FakeClock) -> None:
    header, payload, signature = facility_admin.split(".")
    tampered = f"{header}.{payload[:-4]}AAAA.{signature}"
    assert _enroll(identity_client, tampered, name="x").status_code == 401
    clock.advance(minutes=31)
    assert _enroll(identity_client, facility_admin, name="x").status_code == 401


def test_a_new_set_password_code_can_be_sent(identity_client: TestClient, kit: IdentityKit,
                                             facility_admin: str, facility: str) -> None:
    enrolled = kit.enroll(facility_admin, facility)
    first = kit.last_code(enrolled["mobile"])
    response = identity_client.post(f"/healthid/{enrolled['healthId']}/password-code", headers=bearer(facility_admin))
    assert response.status_code == 202
    second = kit.last_code(enrolled["mobile"])
    if first != second:
        old = identity_client.post("/auth/password", json={"id": enrolled["healthId"], "code": first,
                                                           "password": "monsoon-tea-at-4"})
        assert old.status_code == 401
    kit.set_password(enrolled)
    other = mint_token(identity_client.app, "facility-admin", facility_id="another-org")  # type: ignore[arg-type]
    assert identity_client.post(f"/healthid/{enrolled['healthId']}/password-code",
                                headers=bearer(other)).status_code == 403
