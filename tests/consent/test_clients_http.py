"""System clients: SMART Backend Services client credentials with private_key_jwt, and the SMART
configuration document."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from jose import jwk, jws
import orjson

from consent.clients import CLIENT_ASSERTION_TYPE
from tests.consent.fakes import FakeClock
from tests.consent.kit import IdentityKit, bearer, mint_token

TOKEN_URL = "http://testserver/auth/token"


class VendorKey:
    """An EHR vendor's own key pair (ES384, as SMART Backend Services recommends)."""

    def __init__(self, kid: str = "vendor-key-1") -> None:
        private = ec.generate_private_key(ec.SECP384R1())
        self.pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()
        self.kid = kid
        public = jwk.construct(self.pem, "ES384").public_key().to_dict()
        self.public = {**public, "kid": kid, "alg": "ES384", "use": "sig"}

    def assertion(self, clock: FakeClock, client_id: str, **overrides: Any) -> str:
        now = int(clock().timestamp())
        claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240,
                  "jti": secrets.token_hex(8)}
        claims.update(overrides)
        header = {"kid": self.kid, "typ": "JWT"}
        return jws.sign(orjson.dumps({k: v for k, v in claims.items() if v is not None}), self.pem, headers=header,
                        algorithm="ES384")


@pytest.fixture
def vendor() -> VendorKey:
    return VendorKey()


@pytest.fixture
def registered(identity_client: TestClient, kit: IdentityKit, vendor: VendorKey) -> str:
    admin = mint_token(identity_client.app, "admin")  # type: ignore[arg-type]
    response = identity_client.post("/auth/clients", headers=bearer(admin), json={
        "client_id": "ehr-vendor-1", "name": "Clinic EHR", "jwks": {"keys": [vendor.public]},
        "scopes": ["system/Observation.read", "system/*.write"], "facility": "org-1"})
    assert response.status_code == 201, response.text
    assert response.json()["token_endpoint"] == TOKEN_URL
    return response.json()["client_id"]


def _token(client: TestClient, assertion: str, scope: str | None = None):  # noqa: ANN202
    form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion}
    if scope is not None:
        form["scope"] = scope
    return client.post("/auth/token", data=form)


@pytest.mark.all_backends
def test_client_credentials_grant_issues_a_system_token(identity_client: TestClient, kit: IdentityKit,
                                                        vendor: VendorKey, registered: str, clock: FakeClock) -> None:
    response = _token(identity_client, vendor.assertion(clock, registered), "system/Observation.read")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "system/Observation.read"
    assert "refresh_token" not in body
    principal = kit.identity.verify_access_token(body["access_token"])
    assert (principal.role, principal.subject, principal.client_id, principal.facility_id) == (
        "system", registered, registered, "org-1")
    assert principal.allows("Observation", "read") and not principal.allows("Observation", "write")


def test_no_scope_asked_grants_every_registered_scope(identity_client: TestClient, vendor: VendorKey,
                                                      registered: str, clock: FakeClock) -> None:
    response = _token(identity_client, vendor.assertion(clock, registered))
    assert response.json()["scope"] == "system/Observation.read system/*.write"


def test_narrower_scope_within_a_wildcard_is_granted(identity_client: TestClient, vendor: VendorKey,
                                                     registered: str, clock: FakeClock) -> None:
    response = _token(identity_client, vendor.assertion(clock, registered), "system/Encounter.write")
    assert response.status_code == 200 and response.json()["scope"] == "system/Encounter.write"


def test_unregistered_scope_is_refused(identity_client: TestClient, vendor: VendorKey, registered: str,
                                       clock: FakeClock) -> None:
    response = _token(identity_client, vendor.assertion(clock, registered), "system/Patient.read")
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


@pytest.mark.all_backends
def test_replayed_assertion_is_refused(identity_client: TestClient, vendor: VendorKey, registered: str,
                                       clock: FakeClock) -> None:
    assertion = vendor.assertion(clock, registered)
    assert _token(identity_client, assertion).status_code == 200
    replay = _token(identity_client, assertion)
    assert replay.status_code == 401 and "already used" in replay.json()["error_description"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"aud": "https://other.example.in/token"}, "aud"),
    ({"sub": "someone-else"}, "iss and sub"),
    ({"exp": "far"}, "exp"),
    ({"jti": None}, "jti"),
])
def test_bad_assertion_claims_are_refused(identity_client: TestClient, vendor: VendorKey, registered: str,
                                          clock: FakeClock, overrides: dict, message: str) -> None:
    if overrides.get("exp") == "far":
        overrides = {"exp": int(clock().timestamp()) + 3600}
    response = _token(identity_client, vendor.assertion(clock, registered, **overrides))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert message in response.json()["error_description"]


def test_expired_assertion_is_refused(identity_client: TestClient, vendor: VendorKey, registered: str,
                                      clock: FakeClock) -> None:
    assertion = vendor.assertion(clock, registered)
    clock.advance(minutes=5)
    response = _token(identity_client, assertion)
    assert response.status_code == 401 and "expired" in response.json()["error_description"]


def test_assertion_signed_by_another_key_is_refused(identity_client: TestClient, registered: str,
                                                    clock: FakeClock) -> None:
    impostor = VendorKey(kid="vendor-key-1")  # same kid, different key
    response = _token(identity_client, impostor.assertion(clock, registered))
    assert response.status_code == 401 and "signature" in response.json()["error_description"]


def test_unknown_kid_and_unknown_client_are_refused(identity_client: TestClient, registered: str,
                                                    clock: FakeClock, vendor: VendorKey) -> None:
    other = VendorKey(kid="not-registered")
    assert _token(identity_client, other.assertion(clock, registered)).status_code == 401
    assert _token(identity_client, vendor.assertion(clock, "no-such-client")).status_code == 401


def test_alg_none_assertion_is_refused(identity_client: TestClient, registered: str, clock: FakeClock) -> None:
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(clock().timestamp())
    claims = {"iss": registered, "sub": registered, "aud": TOKEN_URL, "exp": now + 60, "jti": "x"}
    forged = f"{b64(orjson.dumps({'alg': 'none', 'kid': 'vendor-key-1'}))}.{b64(orjson.dumps(claims))}."
    assert _token(identity_client, forged).status_code == 401


def test_missing_assertion_type_is_refused(identity_client: TestClient) -> None:
    response = identity_client.post("/auth/token", data={"grant_type": "client_credentials",
                                                         "client_id": "x", "client_secret": "y"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_only_administrators_register_clients(identity_client: TestClient, vendor: VendorKey) -> None:
    body = {"name": "EHR", "jwks": {"keys": [vendor.public]}, "scopes": ["system/*.read"]}
    app = identity_client.app
    assert identity_client.post("/auth/clients", json=body).status_code == 401
    for role in ("patient", "practitioner", "facility-admin"):
        token = mint_token(app, role)  # type: ignore[arg-type]
        response = identity_client.post("/auth/clients", json=body, headers=bearer(token))
        assert response.status_code == 403


@pytest.mark.parametrize(("change", "message"), [
    ({"jwks": {"keys": []}}, "at least one key"),
    ({"scopes": ["user/*.read"]}, "system/"),
    ({"scopes": []}, "system/"),
    ({"name": ""}, "name"),
])
def test_registration_validates(identity_client: TestClient, vendor: VendorKey, change: dict, message: str) -> None:
    admin = mint_token(identity_client.app, "admin")  # type: ignore[arg-type]
    body = {"name": "EHR", "jwks": {"keys": [vendor.public]}, "scopes": ["system/*.read"], **change}
    response = identity_client.post("/auth/clients", json=body, headers=bearer(admin))
    assert response.status_code == 400 and message in response.json()["error_description"]


def test_registration_refuses_private_keys(identity_client: TestClient, vendor: VendorKey) -> None:
    admin = mint_token(identity_client.app, "admin")  # type: ignore[arg-type]
    private = {**jwk.construct(vendor.pem, "ES384").to_dict(), "kid": "k"}
    response = identity_client.post("/auth/clients", headers=bearer(admin),
                                    json={"name": "EHR", "jwks": {"keys": [private]}, "scopes": ["system/*.read"]})
    assert response.status_code == 400 and "private" in response.json()["error_description"]


def test_smart_configuration_describes_endpoints_and_scopes(identity_client: TestClient) -> None:
    config = identity_client.get("/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == TOKEN_URL
    assert config["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert "ES384" in config["token_endpoint_auth_signing_alg_values_supported"]
    assert "client_credentials" in config["grant_types_supported"]
    assert {"system/*.read", "system/*.write", "patient/*.read"} <= set(config["scopes_supported"])
    assert "client-confidential-asymmetric" in config["capabilities"]
