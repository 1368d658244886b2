"""Sign-in over HTTP: password → OTP (from the development outbox) → tokens → refresh, and every
abuse limit. Time is moved with the fake clock, never slept."""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import replace

import pyotp
import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.consent.fakes import FakeClock
from tests.consent.kit import PASSWORD, IdentityKit, bearer, mint_token

GENERIC_LOGIN_FAILURE = {"error": "invalid_grant",
                         "error_description": "the health ID, address or password is not correct"}
GENERIC_CODE_FAILURE = {"error": "invalid_grant", "error_description": "the code is not correct or no longer valid"}


@pytest.fixture
def facility(kit: IdentityKit) -> str:
    return kit.organization()


@pytest.fixture
def admin_token(identity_client: TestClient) -> str:
    return mint_token(identity_client.app, "admin")  # type: ignore[arg-type]


@pytest.fixture
def patient(kit: IdentityKit, admin_token: str, facility: str) -> dict:
    enrolled = kit.enroll(admin_token, facility, address="asha.sharma@abdm")
    kit.set_password(enrolled)
    return enrolled


def _login(client: TestClient, id: str, password: str = PASSWORD):  # noqa: ANN202
    return client.post("/auth/login", json={"id": id, "password": password})


@pytest.mark.all_backends
def test_whole_sign_in_reaches_the_fhir_api(identity_client: TestClient, kit: IdentityKit, patient: dict,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # everything at INFO and up; our own packages at DEBUG too
    for name in ("consent", "fhir_server", "mappings"):
        caplog.set_level(logging.DEBUG, logger=name)
    login = _login(identity_client, patient["healthId"])
    assert login.status_code == 200
    assert login.json()["method"] == "sms" and login.json()["expires_in"] == 600
    assert login.json()["resend_after"] == 60
    assert login.headers["cache-control"] == "no-store"
    otp = kit.last_code(patient["mobile"])
    assert len(otp) == 6
    verify = identity_client.post("/auth/otp/verify", json={"challenge_id": login.json()["challenge_id"], "otp": otp})
    assert verify.status_code == 200
    grant = verify.json()
    assert grant["token_type"] == "Bearer" and grant["expires_in"] <= 1800 and grant["refresh_token"]
    patient_id = patient["resource"].split("/")[1]
    assert grant["patient"] == patient_id and grant["scope"] == "patient/*.read"
    principal = kit.identity.verify_access_token(grant["access_token"])
    assert (principal.role, principal.patient_id, principal.subject) == ("patient", patient_id, patient["account"])
    read = identity_client.get(f"/Patient/{patient_id}", headers=bearer(grant["access_token"]))
    assert read.status_code == 200 and read.json()["id"] == patient_id
    for secret in (otp, PASSWORD, patient["mobile"], patient["healthId"], patient["healthId"].replace("-", "")):
        assert secret not in caplog.text


def test_sign_in_by_address_and_by_unhyphenated_id(identity_client: TestClient, patient: dict) -> None:
    assert _login(identity_client, "Asha.Sharma@abdm").status_code == 200
    assert _login(identity_client, patient["healthId"].replace("-", " ")).status_code == 200


def test_unknown_id_wrong_password_and_locked_account_look_the_same(identity_client: TestClient, patient: dict,
                                                                   clock: FakeClock) -> None:
    unknown = _login(identity_client, "91-5006-4247-3341")
    wrong = _login(identity_client, patient["healthId"], "not-the-password-1")
    malformed = _login(identity_client, "no such thing")
    for _ in range(4):
        _login(identity_client, patient["healthId"], "not-the-password-1")
    locked = _login(identity_client, patient["healthId"])  # the right password, while locked
    for response in (unknown, wrong, malformed, locked):
        assert response.status_code == 401
        assert response.json() == GENERIC_LOGIN_FAILURE
        assert {k: v for k, v in response.headers.items() if k != "date"} == {
            k: v for k, v in unknown.headers.items() if k != "date"}


@pytest.mark.all_backends
def test_unknown_id_takes_as_long_as_a_wrong_password(settings: Settings, clock: FakeClock) -> None:
    app = create_app(replace(settings, password_memory_kib=8 * 1024, failure_floor_ms=200), clock=clock)
    with TestClient(app) as client:
        account, _ = IdentityKit(client).admin()

        def timed(id: str) -> float:
            start = time.perf_counter()
            assert _login(client, id, "not-the-password-1").status_code == 401
            return time.perf_counter() - start

        unknown = [timed("91-5006-4247-3341") for _ in range(3)]
        known = [timed(account.health_id) for _ in range(3)]
        # the fifth wrong password also writes the lock; the sixth meets a locked account
        locking = [timed(account.health_id) for _ in range(3)]
    for sample in (unknown, known, locking):
        assert 0.2 <= statistics.median(sample) < 1.0


@pytest.mark.all_backends
def test_five_wrong_passwords_lock_the_account_for_the_configured_time(identity_client: TestClient, patient: dict,
                                                                       clock: FakeClock) -> None:
    for _ in range(5):
        assert _login(identity_client, patient["healthId"], "not-the-password-1").status_code == 401
    assert _login(identity_client, patient["healthId"]).status_code == 401
    clock.advance(seconds=Settings().lockout_seconds - 1)
    assert _login(identity_client, patient["healthId"]).status_code == 401
    clock.advance(seconds=2)
    assert _login(identity_client, patient["healthId"]).status_code == 200


def test_lockout_time_is_configurable(settings: Settings, clock: FakeClock) -> None:
    app = create_app(replace(settings, password_memory_kib=8 * 1024, lockout_seconds=60, failure_floor_ms=0),
                     clock=clock)
    with TestClient(app) as client:
        kit = IdentityKit(client)
        account, _ = kit.admin()
        for _ in range(5):
            _login(client, account.health_id, "not-the-password-1")
        assert _login(client, account.health_id).status_code == 401
        clock.advance(seconds=61)
        assert _login(client, account.health_id).status_code == 200


def test_four_wrong_passwords_then_a_right_one_resets_the_count(identity_client: TestClient, patient: dict) -> None:
    for _ in range(4):
        _login(identity_client, patient["healthId"], "not-the-password-1")
    assert _login(identity_client, patient["healthId"]).status_code == 200
    for _ in range(4):
        _login(identity_client, patient["healthId"], "not-the-password-1")
    assert _login(identity_client, patient["healthId"]).status_code == 200


def _challenge(client: TestClient, patient: dict) -> str:
    return _login(client, patient["healthId"]).json()["challenge_id"]


def _verify(client: TestClient, challenge: str, otp: str):  # noqa: ANN202
    return client.post("/auth/otp/verify", json={"challenge_id": challenge, "otp": otp})


@pytest.mark.all_backends
def test_five_wrong_otps_end_the_challenge(identity_client: TestClient, kit: IdentityKit, patient: dict) -> None:
    challenge = _challenge(identity_client, patient)
    otp = kit.last_code(patient["mobile"])
    wrong = "000000" if otp != "000000" else "111111"
    for _ in range(5):
        response = _verify(identity_client, challenge, wrong)
        assert response.status_code == 401 and response.json() == GENERIC_CODE_FAILURE
    assert _verify(identity_client, challenge, otp).status_code == 401


def test_four_wrong_otps_leave_the_challenge_usable(identity_client: TestClient, kit: IdentityKit,
                                                   patient: dict) -> None:
    challenge = _challenge(identity_client, patient)
    otp = kit.last_code(patient["mobile"])
    for _ in range(4):
        _verify(identity_client, challenge, "000000" if otp != "000000" else "111111")
    assert _verify(identity_client, challenge, otp).status_code == 200


def test_otp_is_single_use_and_expires_after_ten_minutes(identity_client: TestClient, kit: IdentityKit,
                                                         patient: dict, clock: FakeClock) -> None:
    challenge = _challenge(identity_client, patient)
    otp = kit.last_code(patient["mobile"])
    assert _verify(identity_client, challenge, otp).status_code == 200
    assert _verify(identity_client, challenge, otp).json() == GENERIC_CODE_FAILURE
    challenge = _challenge(identity_client, patient)
    otp = kit.last_code(patient["mobile"])
    clock.advance(minutes=10)
    assert _verify(identity_client, challenge, otp).status_code == 401


def test_otp_is_stored_hashed(identity_client: TestClient, kit: IdentityKit, patient: dict) -> None:
    challenge = _challenge(identity_client, patient)
    stored = kit.identity.store.challenge(challenge)
    assert stored is not None and kit.last_code(patient["mobile"]) not in (stored.code_hash or "")


def _resend(client: TestClient, challenge: str):  # noqa: ANN202
    return client.post("/auth/otp/resend", json={"challenge_id": challenge})


def test_resend_waits_sixty_seconds_and_replaces_the_code(identity_client: TestClient, kit: IdentityKit,
                                                          patient: dict, clock: FakeClock) -> None:
    challenge = _challenge(identity_client, patient)
    first = kit.last_code(patient["mobile"])
    clock.advance(seconds=30)
    early = _resend(identity_client, challenge)
    assert early.status_code == 429 and early.headers["retry-after"] == "31"
    clock.advance(seconds=30)
    assert _resend(identity_client, challenge).status_code == 200
    second = kit.last_code(patient["mobile"])
    if second != first:
        assert _verify(identity_client, challenge, first).status_code == 401
    assert _verify(identity_client, challenge, second).status_code == 200


@pytest.mark.all_backends
def test_at_most_five_codes_per_ten_minutes(identity_client: TestClient, kit: IdentityKit, patient: dict,
                                            clock: FakeClock) -> None:
    challenge = _challenge(identity_client, patient)  # send 1
    for _ in range(4):  # sends 2..5
        clock.advance(seconds=61)
        assert _resend(identity_client, challenge).status_code == 200
    clock.advance(seconds=61)
    refused = _resend(identity_client, challenge)
    assert refused.status_code == 429 and refused.json()["error"] == "slow_down"
    assert _login(identity_client, patient["healthId"]).status_code == 429  # a new login sends too
    assert len(kit.identity.store.outbox_messages("+91" + patient["mobile"])) == 1 + 5  # set-password + 5
    clock.advance(minutes=6)  # the first send has left the window
    assert _login(identity_client, patient["healthId"]).status_code == 200


@pytest.mark.all_backends
def test_refresh_rotates_and_reuse_revokes_the_family(identity_client: TestClient, kit: IdentityKit,
                                                      patient: dict) -> None:
    grant = kit.sign_in(patient["healthId"], PASSWORD, patient["mobile"])
    first = grant["refresh_token"]
    refreshed = identity_client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first})
    assert refreshed.status_code == 200 and refreshed.headers["cache-control"] == "no-store"
    second = refreshed.json()["refresh_token"]
    assert second != first
    assert kit.identity.verify_access_token(refreshed.json()["access_token"]).patient_id
    reuse = identity_client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first})
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    after = identity_client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": second})
    assert after.status_code == 400  # the whole family went with the reused token


def test_refresh_family_ends_at_its_original_expiry(identity_client: TestClient, kit: IdentityKit, patient: dict,
                                                    clock: FakeClock) -> None:
    token = kit.sign_in(patient["healthId"], PASSWORD, patient["mobile"])["refresh_token"]
    clock.advance(days=14)
    token = identity_client.post("/auth/token", data={"grant_type": "refresh_token",
                                                      "refresh_token": token}).json()["refresh_token"]
    clock.advance(days=1, seconds=1)
    expired = identity_client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token})
    assert expired.status_code == 400


def test_revoked_refresh_token_no_longer_refreshes(identity_client: TestClient, kit: IdentityKit,
                                                   patient: dict) -> None:
    token = kit.sign_in(patient["healthId"], PASSWORD, patient["mobile"])["refresh_token"]
    assert identity_client.post("/auth/revoke", data={"token": token}).status_code == 200
    assert identity_client.post("/auth/revoke", data={"token": "unknown.token"}).status_code == 200
    assert identity_client.post("/auth/token", data={"grant_type": "refresh_token",
                                                     "refresh_token": token}).status_code == 400


@pytest.mark.parametrize("token", ["", "garbage", "abc.def"])
def test_bad_refresh_tokens_are_refused(identity_client: TestClient, token: str) -> None:
    response = identity_client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token})
    assert response.status_code == 400


def test_unsupported_grant_type(identity_client: TestClient) -> None:
    response = identity_client.post("/auth/token", data={"grant_type": "password"})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


@pytest.mark.all_backends
def test_authenticator_app_replaces_sms_codes(identity_client: TestClient, kit: IdentityKit, patient: dict,
                                              clock: FakeClock) -> None:
    token = kit.sign_in(patient["healthId"], PASSWORD, patient["mobile"])["access_token"]
    setup = identity_client.post("/auth/totp/setup", headers=bearer(token))
    assert setup.status_code == 200
    uri = setup.json()["provisioning_uri"]
    assert uri.startswith("otpauth://totp/") and setup.json()["qr_code"].startswith("data:image/png;base64,")
    totp = pyotp.parse_uri(uri)
    wrong = identity_client.post("/auth/totp/confirm", json={"code": "000000" if totp.at(clock()) != "000000"
                                                             else "111111"}, headers=bearer(token))
    assert wrong.status_code == 400
    assert identity_client.post("/auth/totp/confirm", json={"code": totp.at(clock())},
                                headers=bearer(token)).status_code == 204
    sent_before = len(kit.identity.store.outbox_messages())
    clock.advance(seconds=30)
    login = _login(identity_client, patient["healthId"])
    assert login.json()["method"] == "totp" and "resend_after" not in login.json()
    assert len(kit.identity.store.outbox_messages()) == sent_before  # no SMS
    code = totp.at(clock())
    assert _verify(identity_client, login.json()["challenge_id"], code).status_code == 200
    replay = _login(identity_client, patient["healthId"]).json()["challenge_id"]
    assert _verify(identity_client, replay, code).status_code == 401  # each TOTP code signs in once
    assert identity_client.delete("/auth/totp", headers=bearer(token)).status_code == 204
    assert _login(identity_client, patient["healthId"]).json()["method"] == "sms"


def test_totp_endpoints_need_a_token(identity_client: TestClient) -> None:
    response = identity_client.post("/auth/totp/setup")
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")


def test_set_password_enforces_policy_and_keeps_the_code(identity_client: TestClient, kit: IdentityKit,
                                                         admin_token: str, facility: str) -> None:
    enrolled = kit.enroll(admin_token, facility)
    code = kit.last_code(enrolled["mobile"])
    weak = identity_client.post("/auth/password", json={"id": enrolled["healthId"], "code": code,
                                                        "password": "12345678901"})
    assert weak.status_code == 400 and "not only digits" in weak.json()["error_description"]
    contains_id = identity_client.post("/auth/password", json={
        "id": enrolled["healthId"], "code": code, "password": "me" + enrolled["healthId"].replace("-", "")})
    assert contains_id.status_code == 400 and "health ID" in contains_id.json()["error_description"]
    ok = identity_client.post("/auth/password", json={"id": enrolled["healthId"], "code": code, "password": PASSWORD})
    assert ok.status_code == 204
    again = identity_client.post("/auth/password", json={"id": enrolled["healthId"], "code": code,
                                                         "password": "another-good-one"})
    assert again.status_code == 401  # single use


def test_no_sign_in_before_a_password_is_set(identity_client: TestClient, kit: IdentityKit, admin_token: str,
                                             facility: str) -> None:
    enrolled = kit.enroll(admin_token, facility)
    assert _login(identity_client, enrolled["healthId"], "").status_code == 400  # a password is required
    assert _login(identity_client, enrolled["healthId"], "any-password-1").json() == GENERIC_LOGIN_FAILURE


def test_five_wrong_set_password_codes_end_the_code(identity_client: TestClient, kit: IdentityKit,
                                                    admin_token: str, facility: str) -> None:
    enrolled = kit.enroll(admin_token, facility)
    code = kit.last_code(enrolled["mobile"])
    wrong = "00000000" if code != "00000000" else "11111111"
    for _ in range(5):
        assert identity_client.post("/auth/password", json={"id": enrolled["healthId"], "code": wrong,
                                                            "password": PASSWORD}).status_code == 401
    assert identity_client.post("/auth/password", json={"id": enrolled["healthId"], "code": code,
                                                        "password": PASSWORD}).status_code == 401


def test_set_password_code_expires_after_72_hours(identity_client: TestClient, kit: IdentityKit, admin_token: str,
                                                  facility: str, clock: FakeClock) -> None:
    enrolled = kit.enroll(admin_token, facility)
    clock.advance(hours=72)
    assert identity_client.post("/auth/password", json={"id": enrolled["healthId"], "code": kit.last_code(
        enrolled["mobile"]), "password": PASSWORD}).status_code == 401


def test_production_mode_refuses_the_development_outbox(settings: Settings) -> None:
    with pytest.raises(ValueError, match="refused in production"):
        create_app(replace(settings, production=True))


def test_jwks_is_published_and_rotation_keeps_tokens_valid(identity_client: TestClient, kit: IdentityKit,
                                                           patient: dict) -> None:
    token = kit.sign_in(patient["healthId"], PASSWORD, patient["mobile"])["access_token"]
    before = identity_client.get("/.well-known/jwks.json").json()["keys"]
    kit.identity.keys.rotate()
    after = identity_client.get("/.well-known/jwks.json").json()["keys"]
    assert len(after) == len(before) + 1 and all("d" not in k for k in after)
    assert kit.identity.verify_access_token(token).role == "patient"
    fresh = kit.sign_in(patient["healthId"], PASSWORD, patient["mobile"])["access_token"]
    assert kit.identity.verify_access_token(fresh).role == "patient"


def test_bad_json_bodies_are_refused(identity_client: TestClient) -> None:
    assert identity_client.post("/auth/login", content=b"{not json").status_code == 400
    assert identity_client.post("/auth/login", json=["a"]).status_code == 400
    assert identity_client.post("/auth/login", json={"id": "x"}).status_code == 400
