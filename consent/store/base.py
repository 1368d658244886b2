"""What the identity subsystem keeps, and the ``IdentityStore`` interface both backends implement.

Records are plain dataclasses with timezone-aware UTC datetimes at millisecond precision (what both
backends can store exactly). Uniqueness that matters for security (health ID, address, enrollment
key, one use of a token or a client assertion) is enforced by the store's unique indexes and atomic
compare-and-set updates, never by a read followed by a write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Role = Literal["patient", "practitioner", "facility-admin", "admin"]
ROLES: tuple[str, ...] = ("patient", "practitioner", "facility-admin", "admin")

ChallengePurpose = Literal["login", "set-password"]
ChallengeStatus = Literal["open", "used", "failed"]
RefreshStatus = Literal["active", "rotated", "revoked"]


class DuplicateError(Exception):
    """A unique field already holds this value; ``field`` names it (``health_id``, ``address``, ...)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"duplicate {field}")
        self.field = field


class MobileLimitError(Exception):
    """The mobile number already has the maximum number of accounts."""


@dataclass(slots=True)
class Account:
    id: str
    health_id: str  # 14 digits, no separators
    role: str  # one of ROLES
    created_at: datetime
    status: Literal["pending", "active"] = "active"  # pending: enrollment has not finished yet
    mobile: str | None = None  # normalised: +91 and 10 digits
    address: str | None = None  # ABHA address, lower case
    patient_id: str | None = None  # the FHIR Patient this account is
    practitioner_id: str | None = None  # the FHIR Practitioner this account is
    facility_id: str | None = None  # the FHIR Organization the account works for (or was enrolled at)
    enrollment_key: str | None = None  # makes re-running an enrollment find the same person
    password_hash: str | None = None
    failed_logins: int = 0
    locked_until: datetime | None = None
    totp_secret: str | None = None  # an authenticator app is enrolled: sign-in uses TOTP, not SMS
    totp_pending: str | None = None  # a secret shown to the user, not yet confirmed with a code
    totp_last_step: int | None = None  # the last TOTP time step accepted: a code is good only once


@dataclass(slots=True)
class OtpChallenge:
    """A one-time code sent to the account's mobile (or expected from its authenticator app)."""

    id: str
    account_id: str
    purpose: str  # ChallengePurpose
    method: str  # "sms" | "totp"
    created_at: datetime
    expires_at: datetime
    code_hash: str | None = None  # None for TOTP
    attempts: int = 0
    status: str = "open"  # ChallengeStatus
    last_sent_at: datetime | None = None


@dataclass(slots=True)
class RefreshToken:
    """One link in a rotation chain; the secret itself is never stored, only its hash."""

    id: str
    family_id: str
    account_id: str
    secret_hash: str
    created_at: datetime
    expires_at: datetime
    status: str = "active"  # RefreshStatus


@dataclass(slots=True)
class SigningKey:
    kid: str
    alg: str  # ES256 | RS256
    private_pem: str
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None  # no longer signs; still verifies what it signed


@dataclass(slots=True)
class OutboxMessage:
    """A message for a person's mobile, kept by the development sender so tests (and developers) can
    read it; never used in production mode."""

    id: str  # issued in time order (see ``outbox_id``)
    created_at: datetime
    recipient: str
    purpose: str
    body: str


@dataclass(slots=True)
class SystemClient:
    """An EHR vendor's backend service (SMART Backend Services): authenticates with a JWT signed by a
    key from its registered JWKS and gets the scopes it was registered for, at most."""

    client_id: str
    name: str
    jwks: dict[str, Any]
    scopes: list[str]
    created_at: datetime
    facility_id: str | None = None
    active: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class IdentityStore(Protocol):
    # accounts
    def create_account(self, account: Account, *, max_per_mobile: int | None = None) -> None:
        """Inserts; ``DuplicateError`` for a taken health ID, address or enrollment key,
        ``MobileLimitError`` when the mobile already has ``max_per_mobile`` accounts (checked atomically)."""

    def account(self, account_id: str) -> Account | None: ...

    def account_by(self, *, health_id: str | None = None, address: str | None = None,
                   enrollment_key: str | None = None) -> Account | None:
        """The account with the one given unique value."""

    def update_account(self, account_id: str, **changes: Any) -> None:
        """Sets the named fields; ``DuplicateError`` when a new address is taken."""

    def delete_account(self, account_id: str) -> None: ...

    def count_accounts_by_mobile(self, mobile: str) -> int: ...

    def add_login_failure(self, account_id: str) -> int:
        """Atomically counts one more wrong password; returns the new count."""

    # one-time codes
    def create_challenge(self, challenge: OtpChallenge) -> None: ...

    def challenge(self, challenge_id: str) -> OtpChallenge | None: ...

    def add_challenge_attempt(self, challenge_id: str) -> int:
        """Atomically counts one more wrong code; returns the new count."""

    def close_challenge(self, challenge_id: str, status: str) -> bool:
        """Moves an open challenge to ``status``; False when it was no longer open (single use)."""

    def open_challenge(self, account_id: str, purpose: str) -> OtpChallenge | None:
        """The account's newest open challenge for ``purpose``."""

    def reissue_challenge(self, challenge_id: str, code_hash: str, expires_at: datetime) -> bool:
        """Replaces an open challenge's code (a resend); False when it was no longer open."""

    def record_send(self, account_id: str, challenge_id: str, at: datetime) -> None:
        """Notes that a code was sent (for the per-account send limit and the resend delay)."""

    def sends_since(self, account_id: str, since: datetime) -> list[datetime]: ...

    # refresh tokens
    def add_refresh_token(self, token: RefreshToken) -> None: ...

    def refresh_token(self, token_id: str) -> RefreshToken | None: ...

    def rotate_refresh_token(self, token_id: str) -> bool:
        """Active → rotated; False when it was not active (so a token rotates once)."""

    def revoke_refresh_family(self, family_id: str) -> None: ...

    def revoke_account_refresh_tokens(self, account_id: str) -> None: ...

    # signing keys
    def add_signing_key(self, key: SigningKey) -> None: ...

    def signing_keys(self) -> list[SigningKey]:
        """Every key, newest first."""

    def retire_signing_keys(self, at: datetime, keep: str) -> None:
        """Marks every key but ``keep`` retired (if not already)."""

    # development outbox
    def add_outbox_message(self, message: OutboxMessage) -> None: ...

    def outbox_messages(self, recipient: str | None = None) -> list[OutboxMessage]:
        """Oldest first."""

    # system clients
    def add_client(self, client: SystemClient) -> None: ...

    def client(self, client_id: str) -> SystemClient | None: ...

    def use_assertion_id(self, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Records a client assertion's ``jti``; False when it was seen before and has not expired."""

    def close(self) -> None: ...


ACCOUNT_FIELDS = frozenset(Account.__dataclass_fields__) - {"id"}
