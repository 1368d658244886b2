"""14-digit health IDs (ABHA numbers) and ABHA addresses: issuing, parsing, formatting, validating.

Every real ABHA number seen passes the Luhn check, so numbers we issue carry a Luhn check digit and
numbers imported from elsewhere that fail it are accepted with a warning (ABDM.md). Issued numbers
come from ``secrets``: random, never sequential, never guessable from one another.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

LENGTH = 14
_SEPARATORS = re.compile(r"[\s\-]")
_ADDRESS_NAME = re.compile(r"^[a-z0-9.]+$")
ADDRESS_DOMAINS = frozenset({"abdm", "sbx"})  # production and sandbox: what we emit
LEGACY_ADDRESS_DOMAINS = frozenset({"ndhm"})  # the older suffix: accepted on input only
ADDRESS_MIN_NAME = 4
ADDRESS_MAX_NAME = 32  # not documented by ABDM; bounds what we store and index


class HealthIdError(ValueError):
    """A health ID or address that cannot be accepted; the message says why, for the person typing it."""


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # these positions are doubled once the check digit is appended
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return len(number) > 1 and number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


@dataclass(frozen=True, slots=True)
class HealthId:
    """A health ID as its 14 digits; ``str()`` gives the display form ``NN-NNNN-NNNN-NNNN``."""

    digits: str
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def generate(cls) -> HealthId:
        """A new random ID: 13 random digits (the first non-zero) and a Luhn check digit."""
        body = str(secrets.randbelow(9 * 10 ** (LENGTH - 2)) + 10 ** (LENGTH - 2))
        return cls(body + luhn_check_digit(body))

    @classmethod
    def parse(cls, text: str, *, check_digit: Literal["require", "warn"] = "require") -> HealthId:
        """Accepts the digits with or without hyphens or spaces. ``check_digit="warn"`` is for numbers
        imported from other issuers: a failed Luhn check then becomes a warning on the result."""
        digits = _SEPARATORS.sub("", text or "")
        if not digits:
            raise HealthIdError("a health ID is required")
        if not digits.isdigit():
            raise HealthIdError("a health ID has only digits (hyphens and spaces between them are allowed)")
        if len(digits) != LENGTH:
            raise HealthIdError(f"a health ID has {LENGTH} digits, this one has {len(digits)}")
        if not luhn_valid(digits):
            message = "the health ID's last digit (its check digit) does not match: please check for a typo"
            if check_digit == "require":
                raise HealthIdError(message)
            return cls(digits, (message,))
        return cls(digits)

    @staticmethod
    def looks_like(text: str) -> bool:
        """Whether ``text`` is meant as a number rather than an address (used to route look-ups)."""
        return bool(text) and "@" not in text and _SEPARATORS.sub("", text).isdigit()

    @property
    def formatted(self) -> str:
        d = self.digits
        return f"{d[:2]}-{d[2:6]}-{d[6:10]}-{d[10:]}"

    def __str__(self) -> str:
        return self.formatted


@dataclass(frozen=True, slots=True)
class AbhaAddress:
    """An ABHA address ``name@abdm`` (``@sbx`` in the sandbox, ``@ndhm`` on older cards), lower-cased."""

    name: str
    domain: str

    @classmethod
    def parse(cls, text: str, *, legacy: bool = True) -> AbhaAddress:
        """Validates by the documented rules; ``legacy=False`` refuses ``@ndhm`` (for new addresses)."""
        value = (text or "").strip().lower()
        name, at, domain = value.rpartition("@")
        if not at or not name:
            raise HealthIdError("an ABHA address looks like name@abdm")
        allowed = ADDRESS_DOMAINS | (LEGACY_ADDRESS_DOMAINS if legacy else frozenset())
        if domain not in allowed:
            raise HealthIdError(f"an ABHA address ends in {' or '.join('@' + d for d in sorted(allowed))}")
        if name.isdigit():
            if len(name) != LENGTH or domain != "abdm":
                raise HealthIdError(f"an all-digit ABHA address is the {LENGTH}-digit health ID followed by @abdm")
            return cls(name, domain)
        if len(name) < ADDRESS_MIN_NAME:
            raise HealthIdError(f"the name part of an ABHA address has at least {ADDRESS_MIN_NAME} characters")
        if len(name) > ADDRESS_MAX_NAME:
            raise HealthIdError(f"the name part of an ABHA address has at most {ADDRESS_MAX_NAME} characters")
        if not _ADDRESS_NAME.match(name):
            raise HealthIdError("the name part of an ABHA address has only letters, digits and dots")
        if name[0].isdigit():
            raise HealthIdError("the name part of an ABHA address does not start with a digit")
        if name.startswith(".") or name.endswith("."):
            raise HealthIdError("the name part of an ABHA address does not start or end with a dot")
        return cls(name, domain)

    def __str__(self) -> str:
        return f"{self.name}@{self.domain}"
