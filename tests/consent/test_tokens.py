"""Access tokens: issue, verify, and every way a token must be refused; key rotation and the JWKS."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from jose import jws

from consent.keys import KeyRing, canonical_json, thumbprint, verify_detached
from consent.store.sqlite import SqliteIdentityStore
from consent.tokens import InvalidTokenError, Principal, TokenIssuer, TokenVerifier
from tests.consent.fakes import FakeClock

ISS, AUD = "https://fhir.example.in", "https://fhir.example.in"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteIdentityStore]:
    store = SqliteIdentityStore(str(tmp_path / "id.db"))
    yield store
    store.close()


@pytest.fixture
def keys(store: SqliteIdentityStore, clock: FakeClock) -> KeyRing:
    return KeyRing(store, "ES256", clock)


@pytest.fixture
def issuer(keys: KeyRing, clock: FakeClock) -> TokenIssuer:
    return TokenIssuer(keys, clock, issuer=ISS, audience=AUD, lifetime_seconds=900)


@pytest.fixture
def verifier(keys: KeyRing, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(keys, clock, issuer=ISS, audience=AUD)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict, dict, str]:
    h, p, s = token.split(".")
    pad = lambda x: x + "=" * (-len(x) % 4)  # noqa: E731
    return orjson.loads(base64.urlsafe_b64decode(pad(h))), orjson.loads(base64.urlsafe_b64decode(pad(p))), s


def test_issued_token_verifies_to_the_principal(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token, lifetime = issuer.issue(subject="acct-1", role="practitioner", scopes=("user/*.read", "user/*.write"),
                                   facility_id="org-1", practitioner_id="pr-1")
    principal = verifier.verify(token)
    assert lifetime == 900
    assert principal.subject == "acct-1" and principal.role == "practitioner"
    assert principal.scopes == {"user/*.read", "user/*.write"}
    assert (principal.facility_id, principal.practitioner_id, principal.patient_id) == ("org-1", "pr-1", None)
    assert principal.is_staff and principal.token_id


def test_token_header_and_claims(issuer: TokenIssuer, keys: KeyRing) -> None:
    token, _ = issuer.issue(subject="acct-2", role="patient", scopes=("patient/*.read",), patient_id="pat-1")
    header, claims, _ = _parts(token)
    assert header == {"alg": "ES256", "kid": keys.jwks()["keys"][0]["kid"], "typ": "at+jwt"}
    assert claims["iss"] == ISS and claims["aud"] == AUD and claims["sub"] == "acct-2"
    assert claims["role"] == "patient" and claims["scope"] == "patient/*.read"
    assert claims["patient"] == "pat-1" and claims["fhirUser"] == "Patient/pat-1"
    assert claims["exp"] - claims["iat"] == 900 and claims["jti"]


def test_lifetime_over_thirty_minutes_is_refused(keys: KeyRing, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="30 minutes"):
        TokenIssuer(keys, clock, issuer=ISS, audience=AUD, lifetime_seconds=1801)


def test_token_signed_by_another_server_is_refused(verifier: TokenVerifier, clock: FakeClock, tmp_path: Path) -> None:
    other = KeyRing(SqliteIdentityStore(str(tmp_path / "other.db")), "ES256", clock)
    token, _ = TokenIssuer(other, clock, issuer=ISS, audience=AUD, lifetime_seconds=900).issue(
        subject="x", role="admin", scopes=())
    with pytest.raises(InvalidTokenError, match="not signed by this server"):
        verifier.verify(token)


def test_token_signed_with_a_foreign_key_under_our_kid_is_refused(
        issuer: TokenIssuer, verifier: TokenVerifier, clock: FakeClock, tmp_path: Path) -> None:
    ours, _ = issuer.issue(subject="x", role="patient", scopes=())
    header, claims, _ = _parts(ours)
    foreign = KeyRing(SqliteIdentityStore(str(tmp_path / "other.db")), "ES256", clock)
    pem = foreign._signing_key().private_pem  # noqa: SLF001 - the attacker's own key
    forged = jws.sign(orjson.dumps({**claims, "role": "admin"}), pem, headers=header, algorithm="ES256")
    with pytest.raises(InvalidTokenError, match="signature"):
        verifier.verify(forged)


@pytest.mark.parametrize("signature", ["", "AAAA"])
def test_alg_none_is_refused(issuer: TokenIssuer, verifier: TokenVerifier, signature: str) -> None:
    token, _ = issuer.issue(subject="x", role="patient", scopes=())
    header, claims, _ = _parts(token)
    forged = f"{_b64(orjson.dumps({**header, 'alg': 'none'}))}.{_b64(orjson.dumps(claims))}.{signature}"
    with pytest.raises(InvalidTokenError):
        verifier.verify(forged)


def test_hmac_with_the_public_key_as_secret_is_refused(issuer: TokenIssuer, verifier: TokenVerifier,
                                                       keys: KeyRing) -> None:
    token, _ = issuer.issue(subject="x", role="patient", scopes=())
    header, claims, _ = _parts(token)
    secret = orjson.dumps(keys.jwks()["keys"][0])
    forged = jws.sign(orjson.dumps({**claims, "role": "admin"}), secret, headers={**header, "alg": "HS256"},
                      algorithm="HS256")
    with pytest.raises(InvalidTokenError, match="accepted algorithm"):
        verifier.verify(forged)


def test_expired_token_is_refused(issuer: TokenIssuer, verifier: TokenVerifier, clock: FakeClock) -> None:
    token, _ = issuer.issue(subject="x", role="patient", scopes=())
    clock.advance(minutes=14)
    verifier.verify(token)
    clock.advance(minutes=1, seconds=11)
    with pytest.raises(InvalidTokenError, match="expired"):
        verifier.verify(token)


def test_wrong_audience_and_issuer_are_refused(issuer: TokenIssuer, keys: KeyRing, clock: FakeClock) -> None:
    token, _ = issuer.issue(subject="x", role="patient", scopes=())
    with pytest.raises(InvalidTokenError, match="audience"):
        TokenVerifier(keys, clock, issuer=ISS, audience="https://other.example.in").verify(token)
    with pytest.raises(InvalidTokenError, match="issued by someone else"):
        TokenVerifier(keys, clock, issuer="https://other.example.in", audience=AUD).verify(token)


def test_tampered_payload_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token, _ = issuer.issue(subject="x", role="patient", scopes=("patient/*.read",))
    h, _, s = token.split(".")
    _, claims, _ = _parts(token)
    tampered = f"{h}.{_b64(orjson.dumps({**claims, 'role': 'admin', 'scope': 'user/*.write'}))}.{s}"
    with pytest.raises(InvalidTokenError, match="signature"):
        verifier.verify(tampered)


def test_token_of_another_type_signed_by_us_is_refused(keys: KeyRing, verifier: TokenVerifier, clock: FakeClock,
                                                       issuer: TokenIssuer) -> None:
    _, claims, _ = _parts(issuer.issue(subject="x", role="patient", scopes=())[0])
    other_type = keys.sign(orjson.dumps(claims), typ="JWT")
    with pytest.raises(InvalidTokenError, match="not an access token"):
        verifier.verify(other_type)


def test_token_lifetime_longer_than_we_issue_is_refused(keys: KeyRing, verifier: TokenVerifier,
                                                        issuer: TokenIssuer) -> None:
    _, claims, _ = _parts(issuer.issue(subject="x", role="patient", scopes=())[0])
    long_lived = keys.sign(orjson.dumps({**claims, "exp": claims["iat"] + 3600}), typ="at+jwt")
    with pytest.raises(InvalidTokenError, match="longer"):
        verifier.verify(long_lived)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c", "!!!.###.$$$"])
def test_garbage_is_refused(verifier: TokenVerifier, garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        verifier.verify(garbage)


def test_unknown_role_is_refused(keys: KeyRing, verifier: TokenVerifier, issuer: TokenIssuer) -> None:
    _, claims, _ = _parts(issuer.issue(subject="x", role="patient", scopes=())[0])
    with pytest.raises(InvalidTokenError, match="claims"):
        verifier.verify(keys.sign(orjson.dumps({**claims, "role": "superuser"}), typ="at+jwt"))


def test_rotation_keeps_old_tokens_verifiable(keys: KeyRing, issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    old_token, _ = issuer.issue(subject="x", role="patient", scopes=())
    old_kid = _parts(old_token)[0]["kid"]
    new_key = keys.rotate()
    new_token, _ = issuer.issue(subject="y", role="patient", scopes=())
    assert _parts(new_token)[0]["kid"] == new_key.kid != old_kid
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new_key.kid}
    assert verifier.verify(old_token).subject == "x"
    assert verifier.verify(new_token).subject == "y"


def test_rotation_by_another_process_is_picked_up(store: SqliteIdentityStore, keys: KeyRing, clock: FakeClock,
                                                  verifier: TokenVerifier) -> None:
    elsewhere = KeyRing(store, "ES256", clock)
    elsewhere.rotate()
    token, _ = TokenIssuer(elsewhere, clock, issuer=ISS, audience=AUD, lifetime_seconds=900).issue(
        subject="z", role="patient", scopes=())
    clock.advance(seconds=6)
    assert verifier.verify(token).subject == "z"


def test_jwks_publishes_public_parts_only_with_thumbprint_kids(keys: KeyRing) -> None:
    (key,) = keys.jwks()["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256" and key["use"] == "sig"
    assert "d" not in key
    assert key["kid"] == thumbprint(key)


def test_rs256_keys_work(store: SqliteIdentityStore, clock: FakeClock, tmp_path: Path) -> None:
    rsa_keys = KeyRing(SqliteIdentityStore(str(tmp_path / "rsa.db")), "RS256", clock)
    token, _ = TokenIssuer(rsa_keys, clock, issuer=ISS, audience=AUD, lifetime_seconds=600).issue(
        subject="r", role="admin", scopes=())
    assert _parts(token)[0]["alg"] == "RS256"
    assert TokenVerifier(rsa_keys, clock, issuer=ISS, audience=AUD).verify(token).role == "admin"
    assert "d" not in rsa_keys.jwks()["keys"][0]


def test_detached_signature_verifies_against_the_jwks_only_for_the_same_payload(keys: KeyRing) -> None:
    payload = canonical_json({"hidn": "91-5006-4247-3341", "name": "Asha"})
    signature = keys.sign_detached(payload, typ="card")
    assert signature.count(".") == 2 and ".." in signature
    jwks = keys.jwks()
    assert verify_detached(payload, signature, jwks, typ="card")
    assert not verify_detached(canonical_json({"hidn": "91-5006-4247-3341", "name": "Asah"}), signature, jwks,
                               typ="card")
    assert not verify_detached(payload, signature, jwks, typ="at+jwt")
    assert not verify_detached(payload, "garbage", jwks, typ="card")


@pytest.mark.parametrize(("scopes", "resource_type", "action", "allowed"), [
    ({"patient/*.read"}, "Observation", "read", True),
    ({"patient/*.read"}, "Observation", "write", False),
    ({"system/Observation.read"}, "Observation", "read", True),
    ({"system/Observation.read"}, "Patient", "read", False),
    ({"system/*.write"}, "Encounter", "write", True),
    ({"system/*.write"}, "Encounter", "read", False),
    ({"user/*.*"}, "Encounter", "write", True),
    ({"user/Observation.rs"}, "Observation", "read", True),
    ({"user/Observation.rs"}, "Observation", "write", False),
    ({"user/Observation.cu"}, "Observation", "write", True),
    ({"openid", "launch"}, "Observation", "read", False),
])
def test_principal_scope_matching(scopes: set[str], resource_type: str, action: str, allowed: bool) -> None:
    principal = Principal(subject="s", role="system", scopes=frozenset(scopes))
    assert principal.allows(resource_type, action) is allowed
