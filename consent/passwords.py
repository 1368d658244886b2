"""Passwords: argon2id hashing (memory-hard) and the minimum policy.

A missing account is verified against a dummy hash, so a wrong ID takes as long as a wrong password.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 256  # bounds the hashing work one request can ask for
_SEPARATORS = re.compile(r"[\s\-.]")


class PasswordPolicyError(ValueError):
    """The password does not meet the policy; the message says which rule, for the person choosing it."""


def check_password_policy(password: str, *, health_id: str | None = None, address: str | None = None) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"a password has at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"a password has at most {MAX_LENGTH} characters")
    if password.isdigit():
        raise PasswordPolicyError("a password is not only digits")
    if health_id and health_id in _SEPARATORS.sub("", password):
        raise PasswordPolicyError("a password does not contain the health ID")
    name = (address or "").partition("@")[0].lower()
    if name and len(name) >= 4 and name in password.lower():
        raise PasswordPolicyError("a password does not contain the ABHA address")


class Passwords:
    def __init__(self, memory_kib: int = 19 * 1024, time_cost: int = 2) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._dummy: str | None = None  # made on first use: most server instances never need it

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """False for a wrong password and for no hash at all, after the same amount of work."""
        if len(password) > MAX_LENGTH:
            password = password[:MAX_LENGTH]
        if password_hash is None and self._dummy is None:
            self._dummy = self._hasher.hash("not a password anyone has")
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
