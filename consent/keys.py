"""The server's signing keys: generated on first start, kept in the identity store, published as a JWKS.

The newest unretired key signs; every stored key verifies, so rotating the key leaves tokens and
health cards signed with the old one verifiable (tokens until they expire, cards for good). ``kid``
is the key's RFC 7638 thumbprint. Another process's rotation is picked up when an unknown ``kid``
arrives or the cache is a minute old.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import datetime, timedelta
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jws
from jose.exceptions import JOSEError

from consent.clock import Clock
from consent.store import IdentityStore, SigningKey

ALGORITHMS = ("ES256", "RS256")
_REQUIRED_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
_CACHE_FOR = timedelta(minutes=1)
_UNKNOWN_KID_RELOAD_AFTER = timedelta(seconds=5)  # an unknown kid cannot make us hit the store per request


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(public_jwk: dict[str, Any]) -> str:
    members = {name: public_jwk[name] for name in _REQUIRED_MEMBERS[public_jwk["kty"]]}
    return b64url(hashlib.sha256(orjson.dumps(members, option=orjson.OPT_SORT_KEYS)).digest())


def generate_key(alg: str, now: datetime) -> SigningKey:
    if alg == "ES256":
        private: Any = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}: use one of {', '.join(ALGORITHMS)}")
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = {k: v for k, v in jwk.construct(pem, alg).public_key().to_dict().items() if k != "alg"}
    kid = thumbprint(public)
    return SigningKey(kid=kid, alg=alg, private_pem=pem, public_jwk={**public, "kid": kid, "alg": alg, "use": "sig"},
                      created_at=now)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: the bytes a detached signature covers."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def verify_detached(payload: bytes, signature: str, jwks: dict[str, Any], *, typ: str) -> bool:
    """Checks a detached compact JWS (``header..signature``, RFC 7515 appendix F) over ``payload``
    against a published JWKS; what a card scanner does with our ``/.well-known/jwks.json``."""
    try:
        header_b64, empty, signature_b64 = signature.split(".")
        header = orjson.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return False
    if empty or not isinstance(header, dict) or header.get("typ") != typ or header.get("alg") not in ALGORITHMS:
        return False
    key = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if key is None or key.get("alg") != header["alg"]:
        return False
    try:
        jws.verify(f"{header_b64}.{b64url(payload)}.{signature_b64}", key, algorithms=[header["alg"]])
    except JOSEError:
        return False
    return True


class KeyRing:
    def __init__(self, store: IdentityStore, alg: str, clock: Clock) -> None:
        if alg not in ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {alg!r}: use one of {', '.join(ALGORITHMS)}")
        self._store = store
        self._alg = alg
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        self._loaded_at: datetime | None = None
        self._load()
        if self._signing_key() is None:
            self.rotate()

    def _load(self) -> None:
        with self._lock:
            self._keys = self._store.signing_keys()
            self._loaded_at = self._clock()

    def _fresh(self) -> list[SigningKey]:
        if self._loaded_at is None or self._clock() - self._loaded_at > _CACHE_FOR:
            self._load()
        return self._keys

    def _signing_key(self) -> SigningKey | None:
        return next((k for k in self._fresh() if k.retired_at is None), None)

    def rotate(self) -> SigningKey:
        """A new key signs from now on; the old ones stay published and verifying."""
        key = generate_key(self._alg, self._clock())
        self._store.add_signing_key(key)
        self._store.retire_signing_keys(key.created_at, keep=key.kid)
        self._load()
        return key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk for k in self._fresh()]}

    def public_key(self, kid: str) -> dict[str, Any] | None:
        key = next((k for k in self._fresh() if k.kid == kid), None)
        if key is None and self._loaded_at is not None and self._clock() - self._loaded_at > _UNKNOWN_KID_RELOAD_AFTER:
            self._load()
            key = next((k for k in self._keys if k.kid == kid), None)
        return key.public_jwk if key is not None else None

    def sign(self, payload: bytes, *, typ: str) -> str:
        """A compact JWS over ``payload`` with the current key."""
        key = self._signing_key()
        if key is None:  # another process retired ours without a successor: make one
            key = self.rotate()
        return jws.sign(payload, key.private_pem, headers={"kid": key.kid, "typ": typ}, algorithm=key.alg)

    def sign_detached(self, payload: bytes, *, typ: str) -> str:
        header, _, signature = self.sign(payload, typ=typ).split(".")
        return f"{header}..{signature}"
