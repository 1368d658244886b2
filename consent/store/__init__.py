"""The identity store: accounts, one-time codes, refresh tokens, signing keys, outbox, system clients.

It lives beside the FHIR data, in the same SQLite file or MongoDB database the store URL names.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlsplit

from consent.store.base import (
    ROLES,
    Account,
    DuplicateError,
    IdentityStore,
    MobileLimitError,
    OtpChallenge,
    OutboxMessage,
    RefreshToken,
    SigningKey,
    SystemClient,
)
from fhir_server.settings import Settings
from fhir_server.storage.factory import sqlite_path

__all__ = ["ROLES", "Account", "DuplicateError", "IdentityStore", "MobileLimitError", "OtpChallenge",
           "OutboxMessage", "RefreshToken", "SigningKey", "SystemClient", "new_id", "open_identity_store",
           "outbox_id"]


def open_identity_store(settings: Settings) -> IdentityStore:
    url = settings.store_url
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from consent.store.sqlite import SqliteIdentityStore

        return SqliteIdentityStore(sqlite_path(url))
    if scheme in ("mongodb", "mongodb+srv"):
        from consent.store.mongo import MongoIdentityStore

        return MongoIdentityStore(url)
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use sqlite:///path/file.db or mongodb://...")


def new_id() -> str:
    """An unguessable record id (challenge, token, account ids are handed to clients)."""
    return secrets.token_urlsafe(18)


def outbox_id() -> str:
    """Sorts in the order messages were written, whatever clock the service runs on."""
    return f"{time.time_ns():020d}{secrets.token_hex(4)}"
