"""Look-ups by health ID and ABHA address, and ``POST /healthid/$scan`` with every QR payload
variant in ABDM.md."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from mappings.abdm import HEALTH_ID_SYSTEM
from tests.consent.kit import IdentityKit, bearer, mint_token
from tests.consent.qr_reader import decode_qr
from tests.conftest import facility_token

SANDBOX_ID = "91-5006-4247-3341"

CARD_VARIANT = {"hidn": SANDBOX_ID, "hid": "asha.sharma@abdm", "name": "Asha Sharma", "gender": "F",
                "statelgd": "10", "distlgd": "-", "dob": "5/9/1980", "state name": "Bihar",
                "district_name": "Samastipur", "mobile": "98xxxxxx6x", "address": "Ward 4, Samastipur"}
APP_VARIANT = {"hidn": SANDBOX_ID, "phr": "asha.sharma@sbx", "name": "Asha Sharma", "gender": "F",
               "statelgd": "4", "distlgd": "44", "dob": "5-9-1980", "address": "Ward 4, Samastipur"}
OTHER_SPELLINGS = {"hidn": "91500642473341", "hid": "asha.sharma@abdm", "name": "Asha Sharma", "gender": "F",
                   "dob": "1980", "state_name": "Bihar", "dist name": "Samastipur"}


@pytest.fixture
def staff(identity_client: TestClient) -> str:
    return mint_token(identity_client.app, "practitioner", facility_id="any-org")  # type: ignore[arg-type]


@pytest.fixture
def enrolled(kit: IdentityKit, identity_client: TestClient) -> dict:
    facility = kit.organization()
    admin = mint_token(identity_client.app, "facility-admin", facility_id=facility)  # type: ignore[arg-type]
    return kit.enroll(admin, facility, health_id=SANDBOX_ID, address="asha.sharma@abdm")


def _scan(client: TestClient, payload: dict, token: str):  # noqa: ANN202
    return client.post("/healthid/$scan", json=payload, headers=bearer(token))


@pytest.mark.all_backends
@pytest.mark.parametrize("payload", [CARD_VARIANT, APP_VARIANT, OTHER_SPELLINGS],
                         ids=["card-variant", "app-variant", "other-spellings"])
def test_scan_returns_the_patient_for_every_payload_variant(identity_client: TestClient, enrolled: dict,
                                                            staff: str, payload: dict) -> None:
    response = _scan(identity_client, payload, staff)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert f"Patient/{response.json()['id']}" == enrolled["resource"]
    assert response.headers["x-card-signature"] == "absent"


@pytest.mark.parametrize("dob", ["1980", "5/9/1980", "05/09/1980", "5-9-1980", "1980-09-05"])
def test_scan_accepts_every_date_of_birth_form(identity_client: TestClient, enrolled: dict, staff: str,
                                               dob: str) -> None:
    assert _scan(identity_client, {**CARD_VARIANT, "dob": dob}, staff).status_code == 200


def test_scan_falls_back_to_the_address(identity_client: TestClient, kit: IdentityKit, staff: str) -> None:
    facility = kit.organization()
    admin = mint_token(identity_client.app, "facility-admin", facility_id=facility)  # type: ignore[arg-type]
    enrolled = kit.enroll(admin, facility, address="ravi.kumar@sbx", name="Ravi Kumar", gender="male",
                          birth_date="1975")
    payload = {**APP_VARIANT, "hidn": "22-7225-4829-5255", "phr": "ravi.kumar@sbx"}  # a number we do not know
    response = _scan(identity_client, payload, staff)
    assert response.status_code == 200 and f"Patient/{response.json()['id']}" == enrolled["resource"]


def test_scanning_our_own_card_verifies_its_signature(identity_client: TestClient, kit: IdentityKit,
                                                      enrolled: dict, staff: str) -> None:
    png = identity_client.get(f"/healthid/{enrolled['healthId']}/card.png", headers=bearer(staff)).content
    payload = orjson.loads(decode_qr(png))
    scanned = _scan(identity_client, payload, staff)
    assert scanned.status_code == 200 and scanned.headers["x-card-signature"] == "valid"
    tampered = _scan(identity_client, {**payload, "name": "Somebody Else"}, staff)
    assert tampered.status_code == 422 and tampered.json()["issue"][0]["code"] == "security"


@pytest.mark.parametrize(("payload", "message"), [({"name": "x"}, "hidn"), ({"hidn": "123"}, "14 digits"),
                                                  ({**CARD_VARIANT, "dob": "yesterday"}, "date of birth")])
def test_scan_rejects_what_is_not_a_card(identity_client: TestClient, staff: str, payload: dict,
                                         message: str) -> None:
    response = _scan(identity_client, payload, staff)
    assert response.status_code == 400 and message in response.json()["issue"][0]["diagnostics"]


def test_scan_of_an_unknown_card_is_404(identity_client: TestClient, staff: str) -> None:
    assert _scan(identity_client, {**CARD_VARIANT, "hid": "nobody.here@abdm"}, staff).status_code == 404


@pytest.mark.parametrize("form", [SANDBOX_ID, "91500642473341", "91 5006 4247 3341"])
def test_look_up_by_health_id(identity_client: TestClient, enrolled: dict, staff: str, form: str) -> None:
    response = identity_client.get(f"/healthid/{form}", headers=bearer(staff))
    assert response.status_code == 200 and f"Patient/{response.json()['id']}" == enrolled["resource"]
    assert response.headers["etag"] == 'W/"1"'


@pytest.mark.all_backends
def test_look_up_by_address(identity_client: TestClient, enrolled: dict, staff: str) -> None:
    response = identity_client.get("/healthid/Asha.Sharma@abdm", headers=bearer(staff))
    assert response.status_code == 200 and f"Patient/{response.json()['id']}" == enrolled["resource"]


@pytest.mark.all_backends
def test_look_up_finds_patients_created_through_the_fhir_api(identity_client: TestClient, staff: str) -> None:
    created = identity_client.post("/Patient", json={
        "resourceType": "Patient", "identifier": [{"system": "https://healthid.ndhm.gov.in",
                                                   "value": "22722548295255"}]},
                                   headers=bearer(facility_token(identity_client.app))).json()  # type: ignore[arg-type]
    response = identity_client.get("/healthid/22-7225-4829-5255", headers=bearer(staff))
    assert response.status_code == 200 and response.json()["id"] == created["id"]


def test_duplicate_identifiers_are_reported_not_guessed(identity_client: TestClient, staff: str) -> None:
    for _ in range(2):
        identity_client.post("/Patient", json={"resourceType": "Patient",
                                               "identifier": [{"system": HEALTH_ID_SYSTEM, "value": SANDBOX_ID}]},
                             headers=bearer(facility_token(identity_client.app)))  # type: ignore[arg-type]
    assert identity_client.get(f"/healthid/{SANDBOX_ID}", headers=bearer(staff)).status_code == 409


def test_unknown_and_malformed_look_ups(identity_client: TestClient, staff: str) -> None:
    assert identity_client.get(f"/healthid/{SANDBOX_ID}", headers=bearer(staff)).status_code == 404
    assert identity_client.get("/healthid/nobody.here@abdm", headers=bearer(staff)).status_code == 404
    assert identity_client.get("/healthid/12345", headers=bearer(staff)).status_code == 400


@pytest.mark.parametrize("role", ["patient"])
def test_look_ups_are_for_staff(identity_client: TestClient, enrolled: dict, role: str) -> None:
    token = mint_token(identity_client.app, role)  # type: ignore[arg-type]
    assert identity_client.get(f"/healthid/{SANDBOX_ID}", headers=bearer(token)).status_code == 403
    assert _scan(identity_client, CARD_VARIANT, token).status_code == 403
    assert identity_client.get(f"/healthid/{SANDBOX_ID}").status_code == 401


def test_system_clients_look_up_only_with_patient_read_scope(identity_client: TestClient, enrolled: dict) -> None:
    app = identity_client.app
    reader = mint_token(app, "system", scopes=("system/Patient.read",))  # type: ignore[arg-type]
    writer = mint_token(app, "system", scopes=("system/Observation.write",))  # type: ignore[arg-type]
    assert identity_client.get(f"/healthid/{SANDBOX_ID}", headers=bearer(reader)).status_code == 200
    assert identity_client.get(f"/healthid/{SANDBOX_ID}", headers=bearer(writer)).status_code == 403


def test_look_ups_and_scans_are_in_the_patients_audit_trail(identity_client: TestClient, enrolled: dict,
                                                            staff: str) -> None:
    patient_id = enrolled["resource"].partition("/")[2]
    me = bearer(mint_token(identity_client.app, "patient", patient_id=patient_id))  # type: ignore[arg-type]
    assert identity_client.get(f"/healthid/{SANDBOX_ID}", headers=bearer(staff)).status_code == 200
    assert _scan(identity_client, CARD_VARIANT, staff).status_code == 200
    identity_client.app.state.authorization.audit.flush()  # type: ignore[attr-defined]
    events = identity_client.get("/AuditEvent", headers=me).json()
    assert events["total"] == 2
    described = sorted(e["resource"]["outcomeDesc"] for e in events["entry"])
    assert described == [f"GET /healthid/{SANDBOX_ID}", "POST /healthid/$scan"]
    assert all(e["resource"]["agent"][1]["who"] == {"reference": "Organization/any-org"} for e in events["entry"])
