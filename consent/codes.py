"""One-time codes: generated with ``secrets``, stored only as a salted scrypt hash.

scrypt makes an offline guess of a 6-digit code cost about as much as the code's ten minutes of
life, so a copy of the database does not hand out the open codes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import pyotp

OTP_DIGITS = 6
SET_PASSWORD_DIGITS = 8


def new_code(digits: int = OTP_DIGITS) -> str:
    return f"{secrets.randbelow(10 ** digits):0{digits}d}"


def hash_code(salt: str, code: str) -> str:
    return hashlib.scrypt(code.encode(), salt=salt.encode(), n=2 ** 14, r=8, p=1, dklen=32).hex()


def code_matches(salt: str, code: str, code_hash: str | None) -> bool:
    """Constant-time; always does the hashing work, also when there is nothing to compare with."""
    candidate = hash_code(salt, code.strip()[:32])
    return code_hash is not None and hmac.compare_digest(candidate, code_hash)


def totp_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step whose TOTP is ``code`` (now, or one step either side for clock drift), if it is
    later than ``last_step``: each code signs in once."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code.strip()):
            return step
    return None
