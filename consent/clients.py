"""System clients (EHR vendors' backend services): OAuth2 client credentials with ``private_key_jwt``,
as SMART Backend Services describes.

A client is registered with its public keys (a JWKS) and the ``system/`` scopes it may ask for. To
get a token it signs a short-lived assertion with its private key: ``iss`` = ``sub`` = its client id,
``aud`` = our token endpoint, ``exp`` at most 5 minutes ahead, and a ``jti`` we have not seen.
"""

from __future__ import annotations

import base64
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from jose import jws
from jose.exceptions import JOSEError

from consent.clock import Clock
from consent.errors import AuthError, bad_request
from consent.signin import TokenGrant
from consent.store import DuplicateError, IdentityStore, SystemClient, new_id
from consent.tokens import CLOCK_SKEW, TokenIssuer

log = logging.getLogger("consent.clients")

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = {"ES256": "EC", "ES384": "EC", "RS256": "RSA", "RS384": "RSA"}
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
_SYSTEM_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)$")
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{3,64}$")


def _covers(granted: str, wanted: str) -> bool:
    """Whether registered scope ``granted`` includes requested scope ``wanted`` (both ``system/``)."""
    g, w = _SYSTEM_SCOPE.match(granted), _SYSTEM_SCOPE.match(wanted)
    if g is None or w is None or g.group(1) not in ("*", w.group(1)):
        return False
    return _letters(g.group(2)) >= _letters(w.group(2))


def _letters(permission: str) -> set[str]:
    return {"read": set("rs"), "write": set("cud"), "*": set("cruds")}.get(permission, set(permission))


def _b64json(part: str) -> Any:
    return orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _failed(description: str) -> AuthError:
    return AuthError(401, "invalid_client", description)


class ClientService:
    def __init__(self, store: IdentityStore, issuer: TokenIssuer, clock: Clock) -> None:
        self._store = store
        self._issuer = issuer
        self._clock = clock

    def register(self, *, name: str, jwks: dict[str, Any], scopes: list[str], facility_id: str | None = None,
                 client_id: str | None = None) -> SystemClient:
        if not isinstance(name, str) or not name.strip():
            raise bad_request("a client needs a name")
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(keys, list) or not keys:
            raise bad_request("jwks must be a JSON Web Key Set with at least one key")
        for key in keys:
            if not isinstance(key, dict) or key.get("kty") not in ("EC", "RSA") or not key.get("kid"):
                raise bad_request("every key in jwks is an EC or RSA public key with a kid")
            if _PRIVATE_MEMBERS & set(key):
                raise bad_request("jwks must hold public keys only: never send a private key")
        if not scopes or not all(isinstance(s, str) and _SYSTEM_SCOPE.match(s) for s in scopes):
            raise bad_request("scopes are system/<Type or *>.<read, write or *>, e.g. system/Observation.read")
        if client_id is not None and not _CLIENT_ID.match(client_id):
            raise bad_request("a client id has 3 to 64 letters, digits, dots, dashes or underscores")
        client = SystemClient(client_id=client_id or new_id(), name=name.strip(), jwks={"keys": keys},
                              scopes=list(dict.fromkeys(scopes)), created_at=self._clock(), facility_id=facility_id)
        try:
            self._store.add_client(client)
        except DuplicateError:
            raise AuthError(409, "invalid_request", "a client with this id is already registered") from None
        return client

    def token(self, form: dict[str, str], token_endpoint: str) -> TokenGrant:
        """The ``client_credentials`` grant: verifies the client assertion, grants the requested scopes
        the client is registered for (all of them when none are requested)."""
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE or not form.get("client_assertion"):
            raise _failed(f"authenticate with client_assertion_type={CLIENT_ASSERTION_TYPE} and a client_assertion")
        client, claims = self._verify_assertion(form["client_assertion"], token_endpoint)
        requested = form.get("scope", "").split()
        if requested:
            granted = [s for s in requested if any(_covers(g, s) for g in client.scopes)]
            if len(granted) != len(requested):
                raise AuthError(400, "invalid_scope", "the client is not registered for every requested scope")
        else:
            granted = list(client.scopes)
        access, lifetime = self._issuer.issue(subject=client.client_id, role="system", scopes=granted,
                                              facility_id=client.facility_id, client_id=client.client_id)
        return TokenGrant(access, lifetime, " ".join(granted))

    def _verify_assertion(self, assertion: str, token_endpoint: str) -> tuple[SystemClient, dict[str, Any]]:
        parts = assertion.split(".")
        if len(parts) != 3 or not all(parts):
            raise _failed("the client assertion is not a signed JWT")
        try:
            header, unverified = _b64json(parts[0]), _b64json(parts[1])
        except (ValueError, orjson.JSONDecodeError):
            raise _failed("the client assertion is not a signed JWT") from None
        if not isinstance(header, dict) or not isinstance(unverified, dict):
            raise _failed("the client assertion is not a signed JWT")
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise _failed(f"the client assertion must be signed with one of {', '.join(ASSERTION_ALGORITHMS)}")
        client_id = unverified.get("iss")
        client = self._store.client(client_id) if isinstance(client_id, str) and client_id else None
        if client is None or not client.active:
            raise _failed("the client is not registered")
        key = next((k for k in client.jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
        if key is None or key.get("kty") != ASSERTION_ALGORITHMS[alg] or key.get("alg", alg) != alg:
            raise _failed("the client assertion is not signed by a registered key of this client")
        try:
            claims = orjson.loads(jws.verify(assertion, key, algorithms=[alg]))
        except (JOSEError, orjson.JSONDecodeError):
            raise _failed("the client assertion signature is not valid") from None
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise _failed("the client assertion's iss and sub must both be the client id")
        aud = claims.get("aud")
        if aud != token_endpoint and not (isinstance(aud, list) and token_endpoint in aud):
            raise _failed(f"the client assertion's aud must be the token endpoint {token_endpoint}")
        now = self._clock()
        exp = claims.get("exp")
        if not isinstance(exp, int):
            raise _failed("the client assertion needs an exp")
        expires_at = datetime.fromtimestamp(exp, UTC)
        if now >= expires_at + CLOCK_SKEW:
            raise _failed("the client assertion has expired")
        if expires_at > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
            raise _failed("the client assertion's exp is at most 5 minutes ahead")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _failed("the client assertion needs a jti")
        if not self._store.use_assertion_id(client.client_id, jti, expires_at + CLOCK_SKEW, now):
            log.warning("a client assertion was replayed")
            raise _failed("the client assertion was already used")
        return client, claims
