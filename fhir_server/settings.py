"""One settings object, read from the environment or the command line; no global state."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

DEFAULT_STORE = "sqlite:///./data/fhir.db"


@dataclass(frozen=True, slots=True)
class Settings:
    store_url: str = DEFAULT_STORE
    base_url: str | None = None  # public base URL; None: built from each request (X-Forwarded-* honoured)
    max_body_bytes: int = 16 * 1024 * 1024
    default_count: int = 20
    max_count: int = 1000
    # without _total=accurate a search counts at most this many matches (larger results get no total):
    # each counted match costs an access-policy check, and big totals are rarely read
    total_limit: int = 1_000
    # identity and sign-in (issue 5)
    production: bool = False  # FHIR_ENV=production: refuses development-only features (the OTP outbox)
    token_issuer: str | None = None  # `iss` of our tokens; None: base_url, else "urn:fhir-server"
    token_audience: str | None = None  # `aud` of our access tokens; None: the issuer
    signing_alg: str = "ES256"  # ES256 or RS256, for new signing keys
    access_token_seconds: int = 15 * 60  # at most 30 minutes
    refresh_token_seconds: int = 15 * 24 * 3600
    lockout_seconds: int = 15 * 60  # how long 5 wrong passwords lock an account
    failure_floor_ms: int = 300  # a failed sign-in answers no sooner: unknown and known IDs take as long
    password_memory_kib: int = 19 * 1024  # argon2id memory cost per password hash (OWASP minimum)
    sms_webhook_url: str | None = None  # SMS gateway: one JSON POST per message; None: development outbox
    sms_webhook_token: str | None = None  # bearer token for the SMS gateway
    # how often queued AuditEvents of patient-data reads are stored. Each store is a commit, and a
    # commit makes every reader connection drop its page cache (SQLite WAL): at 0.2 s, searches that
    # touch scattered pages (20 patients a page) read them back from the OS five times a second
    audit_flush_seconds: float = 1.0
    # the writer process stores sooner once it holds this many events: at a thousand reads a second,
    # one store of a whole second's events lasts long enough for the requests arriving meanwhile to
    # fill its queue (consent.audit.MAX_PENDING_BATCHES), and then reads wait
    audit_batch_events: int = 500
    audit_writer: str = "thread"  # "process": a writer process of its own (the server's default, from_env)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """``FHIR_STORE`` wins; otherwise ``MONGODB_URI`` selects MongoDB; otherwise the SQLite default."""
        settings = cls(audit_writer="process")
        store = env.get("FHIR_STORE") or env.get("MONGODB_URI")
        if store:
            settings = replace(settings, store_url=store)
        if env.get("FHIR_BASE_URL"):
            settings = replace(settings, base_url=env["FHIR_BASE_URL"])
        if env.get("FHIR_MAX_BODY_BYTES"):
            settings = replace(settings, max_body_bytes=int(env["FHIR_MAX_BODY_BYTES"]))
        if env.get("FHIR_MAX_COUNT"):
            settings = replace(settings, max_count=int(env["FHIR_MAX_COUNT"]))
        if env.get("FHIR_TOTAL_LIMIT"):
            settings = replace(settings, total_limit=int(env["FHIR_TOTAL_LIMIT"]))
        if env.get("FHIR_ENV"):
            settings = replace(settings, production=env["FHIR_ENV"].strip().lower() == "production")
        for name, variable, convert in _IDENTITY_ENV:
            if env.get(variable):
                settings = replace(settings, **{name: convert(env[variable])})
        return settings

    @property
    def issuer(self) -> str:
        return self.token_issuer or (self.base_url.rstrip("/") if self.base_url else "urn:fhir-server")

    @property
    def audience(self) -> str:
        return self.token_audience or self.issuer


def _audit_writer(value: str) -> str:
    if value not in ("thread", "process"):
        raise ValueError(f"FHIR_AUDIT_WRITER must be thread or process, not {value!r}")
    return value


_IDENTITY_ENV: tuple[tuple[str, str, Callable[[str], object]], ...] = (
    ("token_issuer", "FHIR_TOKEN_ISSUER", str),
    ("token_audience", "FHIR_TOKEN_AUDIENCE", str),
    ("signing_alg", "FHIR_SIGNING_ALG", str.upper),
    ("access_token_seconds", "FHIR_ACCESS_TOKEN_SECONDS", int),
    ("refresh_token_seconds", "FHIR_REFRESH_TOKEN_SECONDS", int),
    ("lockout_seconds", "FHIR_LOCKOUT_SECONDS", int),
    ("failure_floor_ms", "FHIR_FAILURE_FLOOR_MS", int),
    ("password_memory_kib", "FHIR_PASSWORD_MEMORY_KIB", int),
    ("sms_webhook_url", "FHIR_SMS_WEBHOOK_URL", str),
    ("sms_webhook_token", "FHIR_SMS_WEBHOOK_TOKEN", str),
    ("audit_flush_seconds", "FHIR_AUDIT_FLUSH_SECONDS", float),
    ("audit_batch_events", "FHIR_AUDIT_BATCH_EVENTS", int),
    ("audit_writer", "FHIR_AUDIT_WRITER", _audit_writer),
)
