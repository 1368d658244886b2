"""Credentials a person sets: a password through a one-time set-password code (never a default
password), and an authenticator app (TOTP) that then replaces SMS codes at sign-in."""

from __future__ import annotations

import logging
from datetime import timedelta

import pyotp

from consent.clock import Clock
from consent.codes import SET_PASSWORD_DIGITS, code_matches, hash_code, new_code, totp_step
from consent.delivery import DeliveryError, MessageSender
from consent.errors import AuthError, bad_request, invalid_code
from consent.health_id import HealthId
from consent.passwords import PasswordPolicyError, Passwords, check_password_policy
from consent.signin import MAX_CODE_ATTEMPTS, find_account, uniform_failures
from consent.store import Account, IdentityStore, OtpChallenge, new_id

log = logging.getLogger("consent.credentials")

SET_PASSWORD_LIFETIME = timedelta(hours=72)
TOTP_ISSUER = "fhir-server"


class CredentialService:
    def __init__(self, store: IdentityStore, passwords: Passwords, sender: MessageSender, clock: Clock, *,
                 failure_floor_ms: int = 0) -> None:
        self._floor = failure_floor_ms / 1000
        self._store = store
        self._passwords = passwords
        self._sender = sender
        self._clock = clock

    # --- set-password codes ------------------------------------------------------------------------

    def issue_password_code(self, account: Account) -> None:
        """Sends a fresh 8-digit set-password code to the account's mobile; earlier ones stop working."""
        if not account.mobile:
            raise bad_request("the account has no mobile number to send a set-password code to")
        now = self._clock()
        while (older := self._store.open_challenge(account.id, "set-password")) is not None:
            self._store.close_challenge(older.id, "failed")
        challenge = OtpChallenge(id=new_id(), account_id=account.id, purpose="set-password", method="sms",
                                 created_at=now, expires_at=now + SET_PASSWORD_LIFETIME)
        code = new_code(SET_PASSWORD_DIGITS)
        challenge.code_hash = hash_code(challenge.id, code)
        self._store.create_challenge(challenge)
        hours = int(SET_PASSWORD_LIFETIME.total_seconds() // 3600)
        try:
            self._sender.send(account.mobile, "set-password",
                              f"Your health ID is {HealthId(account.health_id).formatted}. Set your password with "
                              f"code {code} within {hours} hours. Never share it with anyone.")
        except DeliveryError:
            self._store.close_challenge(challenge.id, "failed")
            raise AuthError(503, "temporarily_unavailable", "the set-password code could not be sent") from None

    def set_password(self, identifier: str, code: str, password: str) -> None:
        """Sets the password when ``code`` is the account's open set-password code; a policy failure
        says which rule and leaves the code usable. Unlocks the account and ends its sessions."""
        with uniform_failures(self._floor):
            self._set_password(identifier, code, password)

    def _set_password(self, identifier: str, code: str, password: str) -> None:
        now = self._clock()
        account = find_account(self._store, identifier)
        challenge = self._store.open_challenge(account.id, "set-password") if account else None
        ok = code_matches(challenge.id if challenge else "-", code, challenge.code_hash if challenge else None)
        if account is None or challenge is None:
            raise invalid_code()
        if now >= challenge.expires_at:
            self._store.close_challenge(challenge.id, "failed")
            raise invalid_code()
        if not ok:
            if self._store.add_challenge_attempt(challenge.id) >= MAX_CODE_ATTEMPTS:
                self._store.close_challenge(challenge.id, "failed")
            raise invalid_code()
        try:
            check_password_policy(password, health_id=account.health_id, address=account.address)
        except PasswordPolicyError as error:
            raise bad_request(str(error)) from None
        if not self._store.close_challenge(challenge.id, "used"):
            raise invalid_code()
        self._store.update_account(account.id, password_hash=self._passwords.hash(password), failed_logins=0,
                                   locked_until=None)
        self._store.revoke_account_refresh_tokens(account.id)
        log.info("password set")

    # --- authenticator app -------------------------------------------------------------------------

    def totp_setup(self, account_id: str) -> str:
        """A new secret, pending until confirmed with a code; returns the ``otpauth://`` provisioning URI."""
        account = self._account(account_id)
        secret = pyotp.random_base32()
        self._store.update_account(account.id, totp_pending=secret)
        return pyotp.TOTP(secret).provisioning_uri(name=HealthId(account.health_id).formatted, issuer_name=TOTP_ISSUER)

    def totp_confirm(self, account_id: str, code: str) -> None:
        account = self._account(account_id)
        if not account.totp_pending:
            raise bad_request("start the authenticator set-up first")
        step = totp_step(account.totp_pending, code, self._clock(), None)
        if step is None:
            raise AuthError(400, "invalid_grant", "the code does not match the authenticator app")
        self._store.update_account(account.id, totp_secret=account.totp_pending, totp_pending=None,
                                   totp_last_step=step)

    def totp_remove(self, account_id: str) -> None:
        """Back to SMS codes at sign-in."""
        self._store.update_account(self._account(account_id).id, totp_secret=None, totp_pending=None,
                                   totp_last_step=None)

    def _account(self, account_id: str) -> Account:
        account = self._store.account(account_id)
        if account is None:
            raise AuthError(401, "invalid_token", "the account no longer exists")
        return account
