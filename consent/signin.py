"""Sign-in: health ID (or ABHA address) + password → one-time code → access and refresh tokens.

Every failure a stranger could use to learn whether an ID exists (unknown ID, wrong password, locked
account, account without a password) gets the same status and body after the same argon2 work.
Limits (ABDM.md): 5 wrong passwords lock the account for ``lockout``; a code lives 10 minutes and
dies after 5 wrong tries; a resend waits 60 seconds; at most 5 codes per account per 10 minutes.
Refresh tokens rotate on every use; presenting a rotated one revokes its whole family.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from consent.clock import Clock
from consent.codes import code_matches, hash_code, new_code, totp_step
from consent.delivery import DeliveryError, MessageSender
from consent.errors import AuthError, invalid_code, invalid_credentials
from consent.health_id import AbhaAddress, HealthId, HealthIdError
from consent.passwords import Passwords
from consent.store import Account, IdentityStore, OtpChallenge, RefreshToken, new_id
from consent.tokens import ROLE_SCOPES, TokenIssuer

log = logging.getLogger("consent.signin")

MAX_PASSWORD_FAILURES = 5
OTP_LIFETIME = timedelta(minutes=10)
RESEND_AFTER = timedelta(seconds=60)
SEND_WINDOW = timedelta(minutes=10)
MAX_SENDS_PER_WINDOW = 5
MAX_CODE_ATTEMPTS = 5


def find_account(store: IdentityStore, identifier: str) -> Account | None:
    """The account a typed health ID (any separators) or ABHA address names; None when it names none
    or is not well formed."""
    try:
        if HealthId.looks_like(identifier):
            return store.account_by(health_id=HealthId.parse(identifier, check_digit="warn").digits)
        return store.account_by(address=str(AbhaAddress.parse(identifier)))
    except HealthIdError:
        return None


@contextmanager
def uniform_failures(floor_seconds: float) -> Iterator[None]:
    """A failure raised inside answers no sooner than ``floor_seconds`` after the start, so the
    different store work behind an unknown ID and a known one cannot be told apart by timing."""
    start = time.monotonic()
    try:
        yield
    except AuthError as error:
        if error.status == 401:
            time.sleep(max(0.0, floor_seconds - (time.monotonic() - start)))
        raise


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()  # 256 random bits: a fast hash is enough


@dataclass(frozen=True, slots=True)
class ChallengeIssued:
    challenge_id: str
    method: str  # "sms" | "totp"
    expires_in: int
    resend_after: int | None  # seconds; None for TOTP (nothing to resend)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"challenge_id": self.challenge_id, "method": self.method, "expires_in": self.expires_in}
        if self.resend_after is not None:
            body["resend_after"] = self.resend_after
        return body


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    patient_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"access_token": self.access_token, "token_type": "Bearer",
                                "expires_in": self.expires_in, "scope": self.scope}
        if self.refresh_token:
            body["refresh_token"] = self.refresh_token
        if self.patient_id:
            body["patient"] = self.patient_id  # SMART launch context
        return body


class SignInService:
    def __init__(self, store: IdentityStore, passwords: Passwords, sender: MessageSender, issuer: TokenIssuer,
                 clock: Clock, *, lockout_seconds: int, refresh_seconds: int, failure_floor_ms: int = 0) -> None:
        self._store = store
        self._passwords = passwords
        self._sender = sender
        self._issuer = issuer
        self._clock = clock
        self._lockout = timedelta(seconds=lockout_seconds)
        self._refresh_lifetime = timedelta(seconds=refresh_seconds)
        self._floor = failure_floor_ms / 1000

    # --- password → challenge ----------------------------------------------------------------------

    def login(self, identifier: str, password: str) -> ChallengeIssued:
        with uniform_failures(self._floor):
            return self._login(identifier, password)

    def _login(self, identifier: str, password: str) -> ChallengeIssued:
        account = find_account(self._store, identifier)
        password_ok = self._passwords.verify(account.password_hash if account else None, password)
        now = self._clock()
        if account is None or account.status != "active" or account.password_hash is None:
            raise invalid_credentials()
        if account.locked_until is not None and account.locked_until > now:
            log.info("sign-in refused: account locked")
            raise invalid_credentials()
        if not password_ok:
            if self._store.add_login_failure(account.id) >= MAX_PASSWORD_FAILURES:
                self._store.update_account(account.id, locked_until=now + self._lockout, failed_logins=0)
                log.warning("account locked after %d wrong passwords", MAX_PASSWORD_FAILURES)
            raise invalid_credentials()
        changes: dict[str, Any] = {}
        if account.failed_logins or account.locked_until is not None:
            changes.update(failed_logins=0, locked_until=None)
        if self._passwords.needs_rehash(account.password_hash):
            changes["password_hash"] = self._passwords.hash(password)
        self._store.update_account(account.id, **changes)
        if account.totp_secret:
            challenge = OtpChallenge(id=new_id(), account_id=account.id, purpose="login", method="totp",
                                     created_at=now, expires_at=now + OTP_LIFETIME)
            self._store.create_challenge(challenge)
            return ChallengeIssued(challenge.id, "totp", int(OTP_LIFETIME.total_seconds()), None)
        if not account.mobile:
            raise invalid_credentials()
        self._check_send_limit(account.id, now)
        challenge = OtpChallenge(id=new_id(), account_id=account.id, purpose="login", method="sms",
                                 created_at=now, expires_at=now + OTP_LIFETIME)
        code = new_code()
        challenge.code_hash = hash_code(challenge.id, code)
        self._store.create_challenge(challenge)
        self._send(challenge, account.mobile, code, now)
        return self._issued(challenge)

    def resend(self, challenge_id: str) -> ChallengeIssued:
        now = self._clock()
        challenge = self._store.challenge(challenge_id) if challenge_id else None
        if (challenge is None or challenge.purpose != "login" or challenge.status != "open"
                or now >= challenge.expires_at):
            raise invalid_code()
        if challenge.method != "sms":
            raise AuthError(400, "invalid_request",
                            "this sign-in uses an authenticator app: there is nothing to resend")
        if challenge.last_sent_at is not None and now < challenge.last_sent_at + RESEND_AFTER:
            wait = int((challenge.last_sent_at + RESEND_AFTER - now).total_seconds()) + 1
            raise AuthError(429, "slow_down", f"a new code can be sent in {wait} seconds",
                            headers={"Retry-After": str(wait)})
        account = self._store.account(challenge.account_id)
        if account is None or not account.mobile:
            raise invalid_code()
        self._check_send_limit(account.id, now)
        code = new_code()
        if not self._store.reissue_challenge(challenge.id, hash_code(challenge.id, code), now + OTP_LIFETIME):
            raise invalid_code()
        challenge.expires_at = now + OTP_LIFETIME
        self._send(challenge, account.mobile, code, now)
        return self._issued(challenge)

    def _check_send_limit(self, account_id: str, now: datetime) -> None:
        sends = self._store.sends_since(account_id, now - SEND_WINDOW)
        if len(sends) >= MAX_SENDS_PER_WINDOW:
            wait = int((sends[0] + SEND_WINDOW - now).total_seconds()) + 1
            raise AuthError(429, "slow_down", f"too many codes were sent; try again in {wait} seconds",
                            headers={"Retry-After": str(wait)})

    def _send(self, challenge: OtpChallenge, mobile: str, code: str, now: datetime) -> None:
        minutes = int(OTP_LIFETIME.total_seconds() // 60)
        try:
            self._sender.send(mobile, "login-otp", f"Your sign-in code is {code}. It is valid for {minutes} "
                                                    "minutes. Never share it with anyone.")
        except DeliveryError:
            self._store.close_challenge(challenge.id, "failed")
            raise AuthError(503, "temporarily_unavailable", "the code could not be sent; try again later") from None
        self._store.record_send(challenge.account_id, challenge.id, now)

    @staticmethod
    def _issued(challenge: OtpChallenge) -> ChallengeIssued:
        return ChallengeIssued(challenge.id, challenge.method, int(OTP_LIFETIME.total_seconds()),
                               int(RESEND_AFTER.total_seconds()))

    # --- challenge → tokens ------------------------------------------------------------------------

    def verify(self, challenge_id: str, code: str) -> TokenGrant:
        now = self._clock()
        challenge = self._store.challenge(challenge_id) if challenge_id else None
        if challenge is None or challenge.purpose != "login" or challenge.status != "open":
            code_matches("-", code, None)
            raise invalid_code()
        if now >= challenge.expires_at:
            self._store.close_challenge(challenge.id, "failed")
            raise invalid_code()
        account = self._store.account(challenge.account_id)
        if account is None or account.status != "active" or (account.locked_until is not None
                                                               and account.locked_until > now):
            raise invalid_code()
        step = None
        if challenge.method == "totp":
            step = totp_step(account.totp_secret, code, now, account.totp_last_step) if account.totp_secret else None
            ok = step is not None
        else:
            ok = code_matches(challenge.id, code, challenge.code_hash)
        if not ok:
            if self._store.add_challenge_attempt(challenge.id) >= MAX_CODE_ATTEMPTS:
                self._store.close_challenge(challenge.id, "failed")
                log.warning("sign-in code ended after %d wrong attempts", MAX_CODE_ATTEMPTS)
            raise invalid_code()
        if not self._store.close_challenge(challenge.id, "used"):
            raise invalid_code()
        if step is not None:
            self._store.update_account(account.id, totp_last_step=step)
        return self.grant(account)

    def grant(self, account: Account, *, family_id: str | None = None,
              family_expires_at: datetime | None = None) -> TokenGrant:
        """An access token for the account's role, and a new refresh token (in ``family_id`` when
        rotating, keeping the family's original expiry: a session lasts at most the refresh lifetime)."""
        now = self._clock()
        scopes = ROLE_SCOPES[account.role]
        access, lifetime = self._issuer.issue(subject=account.id, role=account.role, scopes=scopes,
                                              facility_id=account.facility_id, patient_id=account.patient_id,
                                              practitioner_id=account.practitioner_id)
        secret = secrets.token_urlsafe(32)
        token = RefreshToken(id=new_id(), family_id=family_id or new_id(), account_id=account.id,
                             secret_hash=_secret_hash(secret), created_at=now,
                             expires_at=family_expires_at or now + self._refresh_lifetime)
        self._store.add_refresh_token(token)
        return TokenGrant(access, lifetime, " ".join(scopes), f"{token.id}.{secret}", account.patient_id)

    # --- refresh and revoke ------------------------------------------------------------------------

    def refresh(self, refresh_token: str) -> TokenGrant:
        invalid = AuthError(400, "invalid_grant", "the refresh token is not valid")
        token = self._lookup_refresh(refresh_token)
        if token is None:
            raise invalid
        if token.status == "rotated":
            self._store.revoke_refresh_family(token.family_id)
            log.warning("a rotated refresh token was presented again: its family is revoked")
            raise invalid
        if token.status != "active" or self._clock() >= token.expires_at:
            raise invalid
        if not self._store.rotate_refresh_token(token.id):  # a concurrent use won: treat as reuse
            self._store.revoke_refresh_family(token.family_id)
            raise invalid
        account = self._store.account(token.account_id)
        now = self._clock()
        if account is None or account.status != "active" or (account.locked_until is not None
                                                               and account.locked_until > now):
            self._store.revoke_refresh_family(token.family_id)
            raise invalid
        grant = self.grant(account, family_id=token.family_id, family_expires_at=token.expires_at)
        rotated = self._store.refresh_token(token.id)
        if rotated is None or rotated.status == "revoked":  # reuse detected while we were issuing
            self._store.revoke_refresh_family(token.family_id)
            raise invalid
        return grant

    def revoke(self, refresh_token: str) -> None:
        """Ends the session the token belongs to (RFC 7009: unknown tokens are not an error)."""
        token = self._lookup_refresh(refresh_token)
        if token is not None:
            self._store.revoke_refresh_family(token.family_id)

    def _lookup_refresh(self, refresh_token: str) -> RefreshToken | None:
        token_id, _, secret = (refresh_token or "").partition(".")
        token = self._store.refresh_token(token_id) if token_id and secret else None
        if token is None or not hmac.compare_digest(_secret_hash(secret), token.secret_hash):
            return None
        return token
