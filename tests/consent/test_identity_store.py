"""The identity store contract, run on SQLite and on MongoDB (SecantusDB; a real one with MONGODB_URI)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from consent.health_id import HealthId
from consent.store import (
    Account,
    DuplicateError,
    IdentityStore,
    MobileLimitError,
    OtpChallenge,
    OutboxMessage,
    RefreshToken,
    SigningKey,
    SystemClient,
    new_id,
    outbox_id,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _account(**fields: object) -> Account:
    values: dict[str, object] = {"id": new_id(), "health_id": HealthId.generate().digits, "role": "patient",
                                 "created_at": T0, "mobile": "+919800000001"}
    values.update(fields)
    return Account(**values)  # type: ignore[arg-type]


def test_account_round_trips_every_field(identity_store: IdentityStore) -> None:
    account = _account(address="asha.sharma@abdm", patient_id="p1", facility_id="org1", enrollment_key="k1",
                       password_hash="$argon2id$x", locked_until=T0 + timedelta(minutes=5), totp_secret="S",
                       totp_last_step=7, status="pending")
    identity_store.create_account(account)
    assert identity_store.account(account.id) == account
    assert identity_store.account_by(health_id=account.health_id) == account
    assert identity_store.account_by(address="asha.sharma@abdm") == account
    assert identity_store.account_by(enrollment_key="k1") == account
    assert identity_store.account("nope") is None


def test_duplicate_health_id_is_refused_by_the_unique_index(identity_store: IdentityStore) -> None:
    first = _account()
    identity_store.create_account(first)
    with pytest.raises(DuplicateError) as caught:
        identity_store.create_account(_account(health_id=first.health_id))
    assert caught.value.field == "health_id"


def test_duplicate_address_and_enrollment_key_are_refused(identity_store: IdentityStore) -> None:
    identity_store.create_account(_account(address="asha.sharma@abdm", enrollment_key="k"))
    with pytest.raises(DuplicateError) as caught:
        identity_store.create_account(_account(address="asha.sharma@abdm"))
    assert caught.value.field == "address"
    with pytest.raises(DuplicateError) as caught:
        identity_store.create_account(_account(enrollment_key="k"))
    assert caught.value.field == "enrollment_key"


def test_accounts_without_address_do_not_collide(identity_store: IdentityStore) -> None:
    identity_store.create_account(_account())
    identity_store.create_account(_account())


def test_update_account_sets_and_clears_fields(identity_store: IdentityStore) -> None:
    account = _account(totp_pending="P")
    identity_store.create_account(account)
    identity_store.update_account(account.id, password_hash="h", totp_pending=None, locked_until=T0)
    stored = identity_store.account(account.id)
    assert stored is not None
    assert (stored.password_hash, stored.totp_pending, stored.locked_until) == ("h", None, T0)


def test_update_to_a_taken_address_is_refused(identity_store: IdentityStore) -> None:
    identity_store.create_account(_account(address="taken.one@abdm"))
    other = _account()
    identity_store.create_account(other)
    with pytest.raises(DuplicateError):
        identity_store.update_account(other.id, address="taken.one@abdm")


def test_update_refuses_unknown_fields(identity_store: IdentityStore) -> None:
    with pytest.raises(ValueError, match="not account fields"):
        identity_store.update_account("x", nickname="y")


def test_mobile_limit_is_enforced_on_insert(identity_store: IdentityStore) -> None:
    for _ in range(6):
        identity_store.create_account(_account(mobile="+919811111111"), max_per_mobile=6)
    with pytest.raises(MobileLimitError):
        identity_store.create_account(_account(mobile="+919811111111"), max_per_mobile=6)
    assert identity_store.count_accounts_by_mobile("+919811111111") == 6
    identity_store.create_account(_account(mobile="+919822222222"), max_per_mobile=6)


def test_mobile_limit_holds_under_concurrent_enrollment(identity_store: IdentityStore) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def enroll() -> None:
        try:
            identity_store.create_account(_account(mobile="+919833333333"), max_per_mobile=6)
            result = "ok"
        except MobileLimitError:
            result = "limit"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=enroll) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 6
    assert identity_store.count_accounts_by_mobile("+919833333333") == 6


def test_login_failures_count_atomically(identity_store: IdentityStore) -> None:
    account = _account()
    identity_store.create_account(account)
    assert [identity_store.add_login_failure(account.id) for _ in range(3)] == [1, 2, 3]


def test_challenge_closes_once(identity_store: IdentityStore) -> None:
    challenge = OtpChallenge(id=new_id(), account_id="a", purpose="login", method="sms", created_at=T0,
                             expires_at=T0 + timedelta(minutes=10), code_hash="h")
    identity_store.create_challenge(challenge)
    assert identity_store.challenge(challenge.id) == challenge
    assert [identity_store.add_challenge_attempt(challenge.id) for _ in range(2)] == [1, 2]
    assert identity_store.close_challenge(challenge.id, "used") is True
    assert identity_store.close_challenge(challenge.id, "used") is False
    stored = identity_store.challenge(challenge.id)
    assert stored is not None and stored.status == "used"


def test_open_challenge_is_the_newest_open_one_and_reissue_needs_it_open(identity_store: IdentityStore) -> None:
    older, newer, other = (OtpChallenge(id=new_id(), account_id="a", purpose=purpose, method="sms",
                                        created_at=T0 + timedelta(seconds=n), expires_at=T0 + timedelta(hours=1),
                                        code_hash="h")
                           for n, purpose in ((0, "set-password"), (1, "set-password"), (2, "login")))
    for challenge in (older, newer, other):
        identity_store.create_challenge(challenge)
    assert identity_store.open_challenge("a", "set-password") == newer
    identity_store.close_challenge(newer.id, "failed")
    assert identity_store.open_challenge("a", "set-password") == older
    assert identity_store.open_challenge("b", "set-password") is None
    assert identity_store.reissue_challenge(older.id, "h2", T0 + timedelta(hours=2)) is True
    reissued = identity_store.challenge(older.id)
    assert reissued is not None and (reissued.code_hash, reissued.expires_at) == ("h2", T0 + timedelta(hours=2))
    assert identity_store.reissue_challenge(newer.id, "h3", T0) is False


def test_sends_are_counted_per_account_and_window(identity_store: IdentityStore) -> None:
    challenge = OtpChallenge(id=new_id(), account_id="a", purpose="login", method="sms", created_at=T0,
                             expires_at=T0 + timedelta(minutes=10))
    identity_store.create_challenge(challenge)
    for minutes in (0, 3, 6):
        identity_store.record_send("a", challenge.id, T0 + timedelta(minutes=minutes))
    identity_store.record_send("b", challenge.id, T0)
    assert identity_store.sends_since("a", T0 + timedelta(minutes=1)) == [T0 + timedelta(minutes=3),
                                                                         T0 + timedelta(minutes=6)]
    stored = identity_store.challenge(challenge.id)
    assert stored is not None and stored.last_sent_at == T0


def test_refresh_token_rotates_once_and_family_revokes(identity_store: IdentityStore) -> None:
    tokens = [RefreshToken(id=new_id(), family_id="f", account_id="a", secret_hash="h", created_at=T0,
                           expires_at=T0 + timedelta(days=15)) for _ in range(2)]
    other = RefreshToken(id=new_id(), family_id="g", account_id="a", secret_hash="h", created_at=T0,
                         expires_at=T0 + timedelta(days=15))
    for token in (*tokens, other):
        identity_store.add_refresh_token(token)
    assert identity_store.refresh_token(tokens[0].id) == tokens[0]
    assert identity_store.rotate_refresh_token(tokens[0].id) is True
    assert identity_store.rotate_refresh_token(tokens[0].id) is False
    identity_store.revoke_refresh_family("f")
    assert {identity_store.refresh_token(t.id).status for t in tokens} == {"revoked"}  # type: ignore[union-attr]
    assert identity_store.refresh_token(other.id).status == "active"  # type: ignore[union-attr]
    identity_store.revoke_account_refresh_tokens("a")
    assert identity_store.refresh_token(other.id).status == "revoked"  # type: ignore[union-attr]


def test_signing_keys_newest_first_and_retire(identity_store: IdentityStore) -> None:
    old = SigningKey(kid="k1", alg="ES256", private_pem="pem1", public_jwk={"kty": "EC", "kid": "k1"}, created_at=T0)
    new = SigningKey(kid="k2", alg="ES256", private_pem="pem2", public_jwk={"kty": "EC", "kid": "k2"},
                     created_at=T0 + timedelta(days=1))
    identity_store.add_signing_key(old)
    identity_store.add_signing_key(new)
    assert [k.kid for k in identity_store.signing_keys()] == ["k2", "k1"]
    identity_store.retire_signing_keys(T0 + timedelta(days=1), keep="k2")
    keys = {k.kid: k for k in identity_store.signing_keys()}
    assert keys["k1"].retired_at == T0 + timedelta(days=1) and keys["k2"].retired_at is None
    assert keys["k2"].public_jwk == {"kty": "EC", "kid": "k2"}


def test_outbox_keeps_messages_in_order(identity_store: IdentityStore) -> None:
    for n in range(3):
        identity_store.add_outbox_message(OutboxMessage(id=outbox_id(), created_at=T0, recipient="+91980",
                                                        purpose="otp", body=f"m{n}"))
    identity_store.add_outbox_message(OutboxMessage(id=outbox_id(), created_at=T0, recipient="+91981",
                                                    purpose="otp", body="other"))
    assert [m.body for m in identity_store.outbox_messages("+91980")] == ["m0", "m1", "m2"]
    assert len(identity_store.outbox_messages()) == 4


def test_client_round_trips_and_assertion_ids_are_single_use(identity_store: IdentityStore) -> None:
    client = SystemClient(client_id="ehr-1", name="EHR", jwks={"keys": [{"kty": "EC"}]},
                          scopes=["system/Observation.read"], created_at=T0, facility_id="org1")
    identity_store.add_client(client)
    assert identity_store.client("ehr-1") == client
    with pytest.raises(DuplicateError):
        identity_store.add_client(client)
    expires = T0 + timedelta(minutes=5)
    assert identity_store.use_assertion_id("ehr-1", "j1", expires, T0) is True
    assert identity_store.use_assertion_id("ehr-1", "j1", expires, T0) is False
    assert identity_store.use_assertion_id("ehr-2", "j1", expires, T0) is True
    # once expired, the assertion itself is refused for its exp, so its id may be forgotten
    assert identity_store.use_assertion_id("ehr-1", "j1", expires, expires + timedelta(seconds=1)) is True
