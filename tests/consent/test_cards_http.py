"""Health cards: PNG, SVG and PDF with a QR code that a real decoder (OpenCV) reads back and whose
signature verifies against the published JWKS; altered payloads fail; only holder and staff get one."""

from __future__ import annotations

from xml.etree import ElementTree

import orjson
import pytest
from fastapi.testclient import TestClient

from consent.cards import verify_payload
from tests.consent.kit import IdentityKit, bearer, mint_token
from tests.consent.qr_reader import decode_qr


@pytest.fixture
def facility(kit: IdentityKit) -> str:
    return kit.organization("PHC Samastipur")


@pytest.fixture
def staff(identity_client: TestClient, facility: str) -> str:
    return mint_token(identity_client.app, "facility-admin", facility_id=facility)  # type: ignore[arg-type]


@pytest.fixture
def holder(kit: IdentityKit, staff: str, facility: str) -> tuple[dict, str]:
    return kit.holder(staff, facility, name="Asha Sharma", gender="female", birth_date="1980-09-05",
                      address="asha.sharma@abdm")


def _card(client: TestClient, health_id: str, fmt: str, token: str):  # noqa: ANN202
    return client.get(f"/healthid/{health_id}/card.{fmt}", headers=bearer(token))


@pytest.mark.all_backends
def test_png_card_qr_decodes_to_the_signed_abha_payload(identity_client: TestClient, holder: tuple[dict, str]) -> None:
    enrolled, token = holder
    response = _card(identity_client, enrolled["healthId"], "png", token)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    payload = orjson.loads(decode_qr(response.content))
    assert payload["hidn"] == enrolled["healthId"] and payload["hid"] == "asha.sharma@abdm"
    assert (payload["name"], payload["gender"], payload["dob"]) == ("Asha Sharma", "F", "5/9/1980")
    jwks = identity_client.get("/.well-known/jwks.json").json()
    assert verify_payload(payload, jwks)


@pytest.mark.parametrize(("field", "value"), [("name", "Someone Else"), ("hidn", "91-5006-4247-3341"),
                                              ("dob", "1/1/1990")])
def test_altered_payload_fails_verification(identity_client: TestClient, holder: tuple[dict, str], field: str,
                                            value: str) -> None:
    enrolled, token = holder
    payload = orjson.loads(decode_qr(_card(identity_client, enrolled["healthId"], "png", token).content))
    jwks = identity_client.get("/.well-known/jwks.json").json()
    assert not verify_payload({**payload, field: value}, jwks)
    assert not verify_payload({k: v for k, v in payload.items() if k != "sig"}, jwks)


def test_card_signature_survives_key_rotation(identity_client: TestClient, kit: IdentityKit,
                                              holder: tuple[dict, str]) -> None:
    enrolled, token = holder
    payload = orjson.loads(decode_qr(_card(identity_client, enrolled["healthId"], "png", token).content))
    kit.identity.keys.rotate()
    assert verify_payload(payload, identity_client.get("/.well-known/jwks.json").json())


def test_svg_card_shows_the_details_and_a_qr(identity_client: TestClient, holder: tuple[dict, str]) -> None:
    enrolled, token = holder
    response = _card(identity_client, enrolled["healthId"], "svg", token)
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(response.content)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for expected in (enrolled["healthId"], "Asha Sharma", "asha.sharma@abdm", "5/9/1980", "Female", "PHC Samastipur"):
        assert expected in texts
    assert list(root.iter("{http://www.w3.org/2000/svg}path"))  # the QR code, as qrcode's path factory draws it


def test_pdf_card_is_one_card_sized_page(identity_client: TestClient, holder: tuple[dict, str]) -> None:
    enrolled, token = holder
    response = _card(identity_client, enrolled["healthId"], "pdf", token)
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-") and response.content.rstrip().endswith(b"%%EOF")
    assert b"/Type /Page\n" in response.content or response.content.count(b"/Type /Page") >= 1
    assert b"/Subtype /Image" in response.content  # the QR code


def test_staff_may_fetch_any_card_and_other_patients_may_not(identity_client: TestClient, kit: IdentityKit,
                                                             holder: tuple[dict, str], staff: str,
                                                             facility: str) -> None:
    enrolled, _ = holder
    assert _card(identity_client, enrolled["healthId"], "png", staff).status_code == 200
    practitioner = mint_token(identity_client.app, "practitioner", facility_id="another-org")  # type: ignore[arg-type]
    assert _card(identity_client, enrolled["healthId"], "svg", practitioner).status_code == 200
    _, other_patient = kit.holder(staff, facility, name="Other Person", gender="male", birth_date="1970")
    assert _card(identity_client, enrolled["healthId"], "png", other_patient).status_code == 403
    # a patient asking for a number that does not exist learns nothing more than for one that does
    assert _card(identity_client, "91-5006-4247-3341", "png", other_patient).status_code == 403


def test_card_requests_need_a_token_and_a_known_format(identity_client: TestClient, holder: tuple[dict, str],
                                                       staff: str) -> None:
    enrolled, _ = holder
    assert identity_client.get(f"/healthid/{enrolled['healthId']}/card.png").status_code == 401
    assert _card(identity_client, enrolled["healthId"], "gif", staff).status_code == 404
    assert _card(identity_client, "91-5006-4247-3341", "png", staff).status_code == 404


def test_practitioners_get_cards_too(identity_client: TestClient, kit: IdentityKit, staff: str, facility: str) -> None:
    enrolled, token = kit.holder(staff, facility, role="practitioner", name="Dr Meera Iyer", gender="female",
                                 birth_date="1985-04-12")
    payload = orjson.loads(decode_qr(_card(identity_client, enrolled["healthId"], "png", token).content))
    assert payload["hidn"] == enrolled["healthId"] and payload["name"] == "Dr Meera Iyer"
