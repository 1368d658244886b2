"""The identity store on SQLite: its own tables (``id_*``) in the FHIR store's database file.

One connection behind a lock: identity traffic is small beside FHIR traffic, and serializing it makes
every multi-statement step (the per-mobile limit, say) atomic without further ceremony. WAL mode lets
it share the file with the FHIR store's own connections.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from consent.store.base import (
    ACCOUNT_FIELDS,
    Account,
    DuplicateError,
    MobileLimitError,
    OtpChallenge,
    OutboxMessage,
    RefreshToken,
    SigningKey,
    SystemClient,
)
from consent.store.records import build, from_ms, kinds, to_ms

R = TypeVar("R")

SCHEMA = """
CREATE TABLE IF NOT EXISTS id_account (
    id TEXT PRIMARY KEY,
    health_id TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    mobile TEXT,
    address TEXT UNIQUE,
    patient_id TEXT,
    practitioner_id TEXT,
    facility_id TEXT,
    enrollment_key TEXT UNIQUE,
    password_hash TEXT,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    totp_secret TEXT,
    totp_pending TEXT,
    totp_last_step INTEGER
);
CREATE INDEX IF NOT EXISTS id_account_mobile ON id_account (mobile);
CREATE TABLE IF NOT EXISTS id_challenge (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    method TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    code_hash TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    last_sent_at INTEGER
);
CREATE INDEX IF NOT EXISTS id_challenge_account ON id_challenge (account_id, purpose, status, created_at);
CREATE TABLE IF NOT EXISTS id_otp_send (
    account_id TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS id_otp_send_account ON id_otp_send (account_id, sent_at);
CREATE TABLE IF NOT EXISTS id_refresh_token (
    id TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS id_refresh_token_family ON id_refresh_token (family_id);
CREATE INDEX IF NOT EXISTS id_refresh_token_account ON id_refresh_token (account_id);
CREATE TABLE IF NOT EXISTS id_signing_key (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    private_pem TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);
CREATE TABLE IF NOT EXISTS id_outbox (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    purpose TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS id_outbox_recipient ON id_outbox (recipient, created_at);
CREATE TABLE IF NOT EXISTS id_client (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    jwks TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    facility_id TEXT,
    active INTEGER NOT NULL,
    extra TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS id_assertion (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
"""

_UNIQUE = re.compile(r"UNIQUE constraint failed: \w+\.(\w+)")


def _encode(cls: type, name: str, value: Any) -> Any:
    if value is None:
        return None
    kind = kinds(cls)[name]
    if kind == "time":
        return to_ms(value)
    if kind == "json":
        return orjson.dumps(value).decode()
    if kind == "bool":
        return int(value)
    return value


def _decode(cls: type, name: str, value: Any) -> Any:
    if value is None:
        return None
    kind = kinds(cls)[name]
    if kind == "time":
        return from_ms(value)
    if kind == "json":
        return orjson.loads(value)
    if kind == "bool":
        return bool(value)
    return value


def _columns(record: Any) -> dict[str, Any]:
    cls = type(record)
    return {name: _encode(cls, name, getattr(record, name)) for name in kinds(cls)}


class SqliteIdentityStore:
    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._conn.executescript(SCHEMA)

    # --- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._conn.execute(sql, params)
            except sqlite3.IntegrityError as error:
                raise _duplicate(error) from None

    def _one(self, cls: type[R], sql: str, params: Any = ()) -> R | None:
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return self._record(cls, row) if row is not None else None

    def _all(self, cls: type[R], sql: str, params: Any = ()) -> list[R]:
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [self._record(cls, row) for row in rows]

    @staticmethod
    def _record(cls: type[R], row: sqlite3.Row) -> R:
        return build(cls, {name: _decode(cls, name, row[name]) for name in row.keys()})

    def _insert(self, table: str, record: Any, conn: sqlite3.Connection | None = None) -> None:
        columns = _columns(record)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        if conn is not None:
            try:
                conn.execute(sql, list(columns.values()))
            except sqlite3.IntegrityError as error:
                raise _duplicate(error) from None
        else:
            self._execute(sql, list(columns.values()))

    # --- accounts ----------------------------------------------------------------------------------

    def create_account(self, account: Account, *, max_per_mobile: int | None = None) -> None:
        with self._transaction() as conn:
            if max_per_mobile is not None and account.mobile is not None:
                (count,) = conn.execute("SELECT COUNT(*) FROM id_account WHERE mobile = ?",
                                        (account.mobile,)).fetchone()
                if count >= max_per_mobile:
                    raise MobileLimitError()
            self._insert("id_account", account, conn)

    def account(self, account_id: str) -> Account | None:
        return self._one(Account, "SELECT * FROM id_account WHERE id = ?", (account_id,))

    def account_by(self, *, health_id: str | None = None, address: str | None = None,
                   enrollment_key: str | None = None) -> Account | None:
        column, value = _single(health_id=health_id, address=address, enrollment_key=enrollment_key)
        return self._one(Account, f"SELECT * FROM id_account WHERE {column} = ?", (value,))

    def update_account(self, account_id: str, **changes: Any) -> None:
        unknown = set(changes) - ACCOUNT_FIELDS
        if unknown:
            raise ValueError(f"not account fields: {sorted(unknown)}")
        if not changes:
            return
        assignments = ", ".join(f"{name} = ?" for name in changes)
        values = [_encode(Account, name, value) for name, value in changes.items()]
        self._execute(f"UPDATE id_account SET {assignments} WHERE id = ?", [*values, account_id])

    def delete_account(self, account_id: str) -> None:
        self._execute("DELETE FROM id_account WHERE id = ?", (account_id,))

    def count_accounts_by_mobile(self, mobile: str) -> int:
        return self._execute("SELECT COUNT(*) FROM id_account WHERE mobile = ?", (mobile,)).fetchone()[0]

    def add_login_failure(self, account_id: str) -> int:
        row = self._execute("UPDATE id_account SET failed_logins = failed_logins + 1 WHERE id = ? "
                            "RETURNING failed_logins", (account_id,)).fetchone()
        return row[0] if row else 0

    # --- one-time codes ----------------------------------------------------------------------------

    def create_challenge(self, challenge: OtpChallenge) -> None:
        self._insert("id_challenge", challenge)

    def challenge(self, challenge_id: str) -> OtpChallenge | None:
        return self._one(OtpChallenge, "SELECT * FROM id_challenge WHERE id = ?", (challenge_id,))

    def add_challenge_attempt(self, challenge_id: str) -> int:
        row = self._execute("UPDATE id_challenge SET attempts = attempts + 1 WHERE id = ? RETURNING attempts",
                            (challenge_id,)).fetchone()
        return row[0] if row else 0

    def close_challenge(self, challenge_id: str, status: str) -> bool:
        cursor = self._execute("UPDATE id_challenge SET status = ? WHERE id = ? AND status = 'open'",
                               (status, challenge_id))
        return cursor.rowcount == 1

    def open_challenge(self, account_id: str, purpose: str) -> OtpChallenge | None:
        return self._one(OtpChallenge, "SELECT * FROM id_challenge WHERE account_id = ? AND purpose = ? "
                         "AND status = 'open' ORDER BY created_at DESC, rowid DESC LIMIT 1", (account_id, purpose))

    def reissue_challenge(self, challenge_id: str, code_hash: str, expires_at: datetime) -> bool:
        cursor = self._execute("UPDATE id_challenge SET code_hash = ?, expires_at = ? WHERE id = ? AND status = 'open'",
                               (code_hash, to_ms(expires_at), challenge_id))
        return cursor.rowcount == 1

    def record_send(self, account_id: str, challenge_id: str, at: datetime) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO id_otp_send (account_id, challenge_id, sent_at) VALUES (?, ?, ?)",
                         (account_id, challenge_id, to_ms(at)))
            conn.execute("UPDATE id_challenge SET last_sent_at = ? WHERE id = ?", (to_ms(at), challenge_id))

    def sends_since(self, account_id: str, since: datetime) -> list[datetime]:
        rows = self._execute("SELECT sent_at FROM id_otp_send WHERE account_id = ? AND sent_at >= ? ORDER BY sent_at",
                             (account_id, to_ms(since))).fetchall()
        return [from_ms(r[0]) for r in rows]

    # --- refresh tokens ----------------------------------------------------------------------------

    def add_refresh_token(self, token: RefreshToken) -> None:
        self._insert("id_refresh_token", token)

    def refresh_token(self, token_id: str) -> RefreshToken | None:
        return self._one(RefreshToken, "SELECT * FROM id_refresh_token WHERE id = ?", (token_id,))

    def rotate_refresh_token(self, token_id: str) -> bool:
        cursor = self._execute("UPDATE id_refresh_token SET status = 'rotated' WHERE id = ? AND status = 'active'",
                               (token_id,))
        return cursor.rowcount == 1

    def revoke_refresh_family(self, family_id: str) -> None:
        self._execute("UPDATE id_refresh_token SET status = 'revoked' WHERE family_id = ?", (family_id,))

    def revoke_account_refresh_tokens(self, account_id: str) -> None:
        self._execute("UPDATE id_refresh_token SET status = 'revoked' WHERE account_id = ?", (account_id,))

    # --- signing keys ------------------------------------------------------------------------------

    def add_signing_key(self, key: SigningKey) -> None:
        self._insert("id_signing_key", key)

    def signing_keys(self) -> list[SigningKey]:
        return self._all(SigningKey, "SELECT * FROM id_signing_key ORDER BY created_at DESC, kid DESC")

    def retire_signing_keys(self, at: datetime, keep: str) -> None:
        self._execute("UPDATE id_signing_key SET retired_at = ? WHERE kid != ? AND retired_at IS NULL",
                      (to_ms(at), keep))

    # --- development outbox ------------------------------------------------------------------------

    def add_outbox_message(self, message: OutboxMessage) -> None:
        self._insert("id_outbox", message)

    def outbox_messages(self, recipient: str | None = None) -> list[OutboxMessage]:
        if recipient is None:
            return self._all(OutboxMessage, "SELECT * FROM id_outbox ORDER BY created_at, rowid")
        return self._all(OutboxMessage, "SELECT * FROM id_outbox WHERE recipient = ? ORDER BY created_at, rowid",
                         (recipient,))

    # --- system clients ----------------------------------------------------------------------------

    def add_client(self, client: SystemClient) -> None:
        self._insert("id_client", client)

    def client(self, client_id: str) -> SystemClient | None:
        return self._one(SystemClient, "SELECT * FROM id_client WHERE client_id = ?", (client_id,))

    def use_assertion_id(self, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        with self._transaction() as conn:
            conn.execute("DELETE FROM id_assertion WHERE expires_at < ?", (to_ms(now),))
            cursor = conn.execute("INSERT OR IGNORE INTO id_assertion (client_id, jti, expires_at) VALUES (?, ?, ?)",
                                  (client_id, jti, to_ms(expires_at)))
            return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _single(**values: str | None) -> tuple[str, str]:
    given = [(name, value) for name, value in values.items() if value is not None]
    if len(given) != 1:
        raise ValueError("name exactly one of health_id, address, enrollment_key")
    return given[0]


def _duplicate(error: sqlite3.IntegrityError) -> Exception:
    match = _UNIQUE.search(str(error))
    if match is None:
        return error
    return DuplicateError(match.group(1))
