"""Access tokens: who the caller is (``Principal``), issuing signed JWTs, and verifying them.

``TokenVerifier.verify(token) -> Principal`` is the one place a bearer token becomes an identity;
``consent.policy`` builds the AccessPolicy from its result. Tokens are JWTs (RFC 9068 ``typ:
at+jwt``) signed with the server's current key (ES256 or RS256, ``kid`` in the header, key in the
JWKS). Verification trusts nothing in the token before the signature checks out with one of our
own keys under that key's own algorithm: ``alg: none``, HMAC tricks and foreign keys all fail there.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from jose import jws
from jose.exceptions import JOSEError

from consent.clock import Clock
from consent.keys import ALGORITHMS, KeyRing

ACCESS_TOKEN_TYPE = "at+jwt"
MAX_ACCESS_TOKEN_LIFETIME = timedelta(minutes=30)
CLOCK_SKEW = timedelta(seconds=10)
PRINCIPAL_ROLES = ("patient", "practitioner", "facility-admin", "admin", "system")
STAFF_ROLES = frozenset({"practitioner", "facility-admin", "admin", "system"})

ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "patient": ("patient/*.read",),
    "practitioner": ("user/*.read", "user/*.write"),
    "facility-admin": ("user/*.read", "user/*.write"),
    "admin": ("user/*.read", "user/*.write"),
}

_READ, _WRITE = frozenset("rs"), frozenset("cud")


class InvalidTokenError(Exception):
    """The token cannot be trusted; the message is for logs and the ``WWW-Authenticate`` description
    and says what was wrong with the token, never anything about accounts."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller. ``subject`` is an account id (people) or a client id (role ``system``)."""

    subject: str
    role: str  # patient | practitioner | facility-admin | admin | system
    scopes: frozenset[str]
    facility_id: str | None = None  # the Organization the caller acts for
    patient_id: str | None = None  # the caller's own Patient (role patient)
    practitioner_id: str | None = None  # the caller's own Practitioner (staff enrolled at a facility)
    client_id: str | None = None  # role system: the registered client
    token_id: str = ""
    expires_at: datetime | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    def allows(self, resource_type: str, action: str) -> bool:
        """Whether a SMART scope (``patient/*.read``, ``system/Observation.write``, v2 ``user/*.rs``)
        covers ``action`` ("read" or "write") on ``resource_type``. Compartment and consent rules
        come on top of this, in the AccessPolicy."""
        wanted = _READ if action == "read" else _WRITE
        for scope in self.scopes:
            context, slash, rest = scope.partition("/")
            if not slash or context not in ("patient", "user", "system"):
                continue
            scope_type, dot, permission = rest.partition(".")
            if not dot or scope_type not in ("*", resource_type):
                continue
            if permission == "*" or permission == action:
                return True
            if set(permission) <= set("cruds") and set(permission) & wanted:
                return True
        return False


def _b64json(part: str) -> Any:
    return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class TokenIssuer:
    def __init__(self, keys: KeyRing, clock: Clock, *, issuer: str, audience: str, lifetime_seconds: int) -> None:
        lifetime = timedelta(seconds=lifetime_seconds)
        if not timedelta(0) < lifetime <= MAX_ACCESS_TOKEN_LIFETIME:
            raise ValueError("access tokens live more than 0 seconds and at most 30 minutes")
        self._keys = keys
        self._clock = clock
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime

    def issue(self, *, subject: str, role: str, scopes: tuple[str, ...] | list[str], facility_id: str | None = None,
              patient_id: str | None = None, practitioner_id: str | None = None,
              client_id: str | None = None) -> tuple[str, int]:
        """A signed access token and its lifetime in seconds."""
        now = self._clock()
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": subject, "iat": int(now.timestamp()),
            "exp": int((now + self.lifetime).timestamp()), "jti": secrets.token_urlsafe(16),
            "role": role, "scope": " ".join(scopes),
        }
        if facility_id:
            claims["facility"] = facility_id
        if patient_id:
            claims["patient"] = patient_id
            claims["fhirUser"] = f"Patient/{patient_id}"
        if practitioner_id:
            claims["practitioner"] = practitioner_id
            claims["fhirUser"] = f"Practitioner/{practitioner_id}"
        if client_id:
            claims["client_id"] = client_id
        return self._keys.sign(orjson.dumps(claims), typ=ACCESS_TOKEN_TYPE), int(self.lifetime.total_seconds())


class TokenVerifier:
    def __init__(self, keys: KeyRing, clock: Clock, *, issuer: str, audience: str) -> None:
        self._keys = keys
        self._clock = clock
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> Principal:
        return verify_access_token(token, self._keys, self._clock, issuer=self.issuer, audience=self.audience)


def verify_access_token(token: str, keys: KeyRing, clock: Clock, *, issuer: str, audience: str) -> Principal:
    """The Principal a bearer token stands for, or ``InvalidTokenError``."""
    parts = token.split(".") if token else []
    if len(parts) != 3 or not all(parts):
        raise InvalidTokenError("the token is not a signed JWT")
    try:
        header = _b64json(parts[0])
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidTokenError("the token header is not valid") from None
    if not isinstance(header, dict) or header.get("alg") not in ALGORITHMS:
        raise InvalidTokenError("the token is not signed with an accepted algorithm")
    if header.get("typ") != ACCESS_TOKEN_TYPE:
        raise InvalidTokenError("the token is not an access token")
    key = keys.public_key(str(header.get("kid", "")))
    if key is None or key["alg"] != header["alg"]:
        raise InvalidTokenError("the token is not signed by this server")
    try:
        payload = jws.verify(token, key, algorithms=[key["alg"]])
        claims = orjson.loads(payload)
    except (JOSEError, orjson.JSONDecodeError):
        raise InvalidTokenError("the token signature is not valid") from None
    if not isinstance(claims, dict):
        raise InvalidTokenError("the token claims are not valid")
    return _principal(claims, clock(), issuer, audience)


def _principal(claims: dict[str, Any], now: datetime, issuer: str, audience: str) -> Principal:
    if claims.get("iss") != issuer:
        raise InvalidTokenError("the token was issued by someone else")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise InvalidTokenError("the token is meant for another audience")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise InvalidTokenError("the token has no valid lifetime")
    expires_at = datetime.fromtimestamp(exp, UTC)
    if now >= expires_at + CLOCK_SKEW:
        raise InvalidTokenError("the token has expired")
    if datetime.fromtimestamp(iat, UTC) > now + CLOCK_SKEW:
        raise InvalidTokenError("the token is not valid yet")
    if timedelta(seconds=exp - iat) > MAX_ACCESS_TOKEN_LIFETIME:
        raise InvalidTokenError("the token lives longer than this server issues")
    role, subject, scope = claims.get("role"), claims.get("sub"), claims.get("scope", "")
    if role not in PRINCIPAL_ROLES or not isinstance(subject, str) or not subject or not isinstance(scope, str):
        raise InvalidTokenError("the token claims are not valid")
    return Principal(subject=subject, role=role, scopes=frozenset(scope.split()),
                     facility_id=_optional(claims, "facility"), patient_id=_optional(claims, "patient"),
                     practitioner_id=_optional(claims, "practitioner"), client_id=_optional(claims, "client_id"),
                     token_id=str(claims.get("jti", "")), expires_at=expires_at)


def _optional(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None
