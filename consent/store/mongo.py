"""The identity store on MongoDB: ``id_*`` collections in the FHIR store's database.

Unique indexes carry every uniqueness rule (sparse where the field is optional: absent fields are
not stored). The per-mobile limit runs in a transaction that first bumps a per-mobile counter
document, so two concurrent enrollments for one mobile conflict and one is retried, instead of both
counting five and both inserting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

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
from consent.store.records import build, from_naive, kinds, to_naive

R = TypeVar("R")

_KEYS = {Account: "id", OtpChallenge: "id", RefreshToken: "id", SigningKey: "kid", OutboxMessage: "id",
         SystemClient: "client_id"}


def _doc(record: Any) -> dict[str, Any]:
    cls = type(record)
    doc: dict[str, Any] = {}
    for name, kind in kinds(cls).items():
        value = getattr(record, name)
        if value is None:
            continue  # absent, so sparse unique indexes ignore it
        doc["_id" if name == _KEYS[cls] else name] = to_naive(value) if kind == "time" else value
    return doc


def _record(cls: type[R], doc: dict[str, Any] | None) -> R | None:
    if doc is None:
        return None
    values: dict[str, Any] = {}
    for name, kind in kinds(cls).items():
        key = "_id" if name == _KEYS[cls] else name
        if key in doc:
            values[name] = from_naive(doc[key]) if kind == "time" else doc[key]
    return build(cls, values)


def _set(changes: dict[str, Any]) -> dict[str, Any]:
    update: dict[str, Any] = {}
    sets = {n: to_naive(v) if kinds(Account)[n] == "time" else v for n, v in changes.items() if v is not None}
    unsets = {n: "" for n, v in changes.items() if v is None}
    if sets:
        update["$set"] = sets
    if unsets:
        update["$unset"] = unsets
    return update


def _duplicate(error: DuplicateKeyError) -> DuplicateError:
    pattern = (error.details or {}).get("keyPattern") or {}
    name = next(iter(pattern), "_id")
    return DuplicateError("id" if name == "_id" else name)


class MongoIdentityStore:
    def __init__(self, url: str) -> None:
        self._client: MongoClient = MongoClient(url, tz_aware=False)
        self._db = self._client.get_default_database(default="fhir")
        db = self._db
        db.id_accounts.create_indexes([
            IndexModel([("health_id", ASCENDING)], name="health_id", unique=True),
            IndexModel([("address", ASCENDING)], name="address", unique=True, sparse=True),
            IndexModel([("enrollment_key", ASCENDING)], name="enrollment_key", unique=True, sparse=True),
            IndexModel([("mobile", ASCENDING)], name="mobile"),
        ])
        db.id_challenges.create_indexes([IndexModel([("account_id", ASCENDING), ("purpose", ASCENDING),
                                                     ("status", ASCENDING), ("created_at", ASCENDING)],
                                                    name="account_purpose")])
        db.id_otp_sends.create_indexes([IndexModel([("account_id", ASCENDING), ("sent_at", ASCENDING)],
                                                   name="account_sent")])
        db.id_refresh_tokens.create_indexes([IndexModel([("family_id", ASCENDING)], name="family"),
                                             IndexModel([("account_id", ASCENDING)], name="account")])
        db.id_outbox.create_indexes([IndexModel([("recipient", ASCENDING), ("_id", ASCENDING)], name="recipient")])
        db.id_assertions.create_indexes([IndexModel([("expires_at", ASCENDING)], name="expires")])

    # --- accounts ----------------------------------------------------------------------------------

    def create_account(self, account: Account, *, max_per_mobile: int | None = None) -> None:
        doc = _doc(account)
        try:
            if max_per_mobile is None or account.mobile is None:
                self._db.id_accounts.insert_one(doc)
                return
            with self._client.start_session() as session:
                session.with_transaction(
                    lambda s: self._insert_within_limit(doc, account.mobile, max_per_mobile, s),
                    read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority"),
                    read_preference=ReadPreference.PRIMARY)
        except DuplicateKeyError as error:
            raise _duplicate(error) from None

    def _insert_within_limit(self, doc: dict[str, Any], mobile: str, limit: int, session: Any) -> None:
        self._db.id_mobile_claims.update_one({"_id": mobile}, {"$inc": {"n": 1}}, upsert=True, session=session)
        if self._db.id_accounts.count_documents({"mobile": mobile}, session=session) >= limit:
            raise MobileLimitError()
        self._db.id_accounts.insert_one(doc, session=session)

    def account(self, account_id: str) -> Account | None:
        return _record(Account, self._db.id_accounts.find_one({"_id": account_id}))

    def account_by(self, *, health_id: str | None = None, address: str | None = None,
                   enrollment_key: str | None = None) -> Account | None:
        given = {k: v for k, v in (("health_id", health_id), ("address", address),
                                   ("enrollment_key", enrollment_key)) if v is not None}
        if len(given) != 1:
            raise ValueError("name exactly one of health_id, address, enrollment_key")
        return _record(Account, self._db.id_accounts.find_one(given))

    def update_account(self, account_id: str, **changes: Any) -> None:
        unknown = set(changes) - ACCOUNT_FIELDS
        if unknown:
            raise ValueError(f"not account fields: {sorted(unknown)}")
        if not changes:
            return
        try:
            self._db.id_accounts.update_one({"_id": account_id}, _set(changes))
        except DuplicateKeyError as error:
            raise _duplicate(error) from None

    def delete_account(self, account_id: str) -> None:
        self._db.id_accounts.delete_one({"_id": account_id})

    def count_accounts_by_mobile(self, mobile: str) -> int:
        return self._db.id_accounts.count_documents({"mobile": mobile})

    def add_login_failure(self, account_id: str) -> int:
        doc = self._db.id_accounts.find_one_and_update({"_id": account_id}, {"$inc": {"failed_logins": 1}},
                                                       projection={"failed_logins": 1},
                                                       return_document=ReturnDocument.AFTER)
        return doc["failed_logins"] if doc else 0

    # --- one-time codes ----------------------------------------------------------------------------

    def create_challenge(self, challenge: OtpChallenge) -> None:
        self._db.id_challenges.insert_one(_doc(challenge))

    def challenge(self, challenge_id: str) -> OtpChallenge | None:
        return _record(OtpChallenge, self._db.id_challenges.find_one({"_id": challenge_id}))

    def add_challenge_attempt(self, challenge_id: str) -> int:
        doc = self._db.id_challenges.find_one_and_update({"_id": challenge_id}, {"$inc": {"attempts": 1}},
                                                         projection={"attempts": 1},
                                                         return_document=ReturnDocument.AFTER)
        return doc["attempts"] if doc else 0

    def close_challenge(self, challenge_id: str, status: str) -> bool:
        result = self._db.id_challenges.update_one({"_id": challenge_id, "status": "open"},
                                                   {"$set": {"status": status}})
        return result.modified_count == 1

    def open_challenge(self, account_id: str, purpose: str) -> OtpChallenge | None:
        cursor = self._db.id_challenges.find({"account_id": account_id, "purpose": purpose, "status": "open"})
        return _record(OtpChallenge, next(iter(cursor.sort("created_at", DESCENDING).limit(1)), None))

    def reissue_challenge(self, challenge_id: str, code_hash: str, expires_at: datetime) -> bool:
        result = self._db.id_challenges.update_one({"_id": challenge_id, "status": "open"},
                                                   {"$set": {"code_hash": code_hash,
                                                             "expires_at": to_naive(expires_at)}})
        return result.modified_count == 1

    def record_send(self, account_id: str, challenge_id: str, at: datetime) -> None:
        self._db.id_otp_sends.insert_one({"account_id": account_id, "challenge_id": challenge_id,
                                          "sent_at": to_naive(at)})
        self._db.id_challenges.update_one({"_id": challenge_id}, {"$set": {"last_sent_at": to_naive(at)}})

    def sends_since(self, account_id: str, since: datetime) -> list[datetime]:
        cursor = self._db.id_otp_sends.find({"account_id": account_id, "sent_at": {"$gte": to_naive(since)}},
                                            {"sent_at": 1}).sort("sent_at", ASCENDING)
        return [from_naive(doc["sent_at"]) for doc in cursor]

    # --- refresh tokens ----------------------------------------------------------------------------

    def add_refresh_token(self, token: RefreshToken) -> None:
        self._db.id_refresh_tokens.insert_one(_doc(token))

    def refresh_token(self, token_id: str) -> RefreshToken | None:
        return _record(RefreshToken, self._db.id_refresh_tokens.find_one({"_id": token_id}))

    def rotate_refresh_token(self, token_id: str) -> bool:
        result = self._db.id_refresh_tokens.update_one({"_id": token_id, "status": "active"},
                                                       {"$set": {"status": "rotated"}})
        return result.modified_count == 1

    def revoke_refresh_family(self, family_id: str) -> None:
        self._db.id_refresh_tokens.update_many({"family_id": family_id}, {"$set": {"status": "revoked"}})

    def revoke_account_refresh_tokens(self, account_id: str) -> None:
        self._db.id_refresh_tokens.update_many({"account_id": account_id}, {"$set": {"status": "revoked"}})

    # --- signing keys ------------------------------------------------------------------------------

    def add_signing_key(self, key: SigningKey) -> None:
        self._db.id_signing_keys.insert_one(_doc(key))

    def signing_keys(self) -> list[SigningKey]:
        cursor = self._db.id_signing_keys.find().sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        return [k for doc in cursor if (k := _record(SigningKey, doc)) is not None]

    def retire_signing_keys(self, at: datetime, keep: str) -> None:
        self._db.id_signing_keys.update_many({"_id": {"$ne": keep}, "retired_at": None},
                                             {"$set": {"retired_at": to_naive(at)}})

    # --- development outbox ------------------------------------------------------------------------

    def add_outbox_message(self, message: OutboxMessage) -> None:
        self._db.id_outbox.insert_one(_doc(message))

    def outbox_messages(self, recipient: str | None = None) -> list[OutboxMessage]:
        query = {} if recipient is None else {"recipient": recipient}
        cursor = self._db.id_outbox.find(query).sort("_id", ASCENDING)  # ids are issued in time order
        return [m for doc in cursor if (m := _record(OutboxMessage, doc)) is not None]

    # --- system clients ----------------------------------------------------------------------------

    def add_client(self, client: SystemClient) -> None:
        try:
            self._db.id_clients.insert_one(_doc(client))
        except DuplicateKeyError as error:
            raise _duplicate(error) from None

    def client(self, client_id: str) -> SystemClient | None:
        return _record(SystemClient, self._db.id_clients.find_one({"_id": client_id}))

    def use_assertion_id(self, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        self._db.id_assertions.delete_many({"expires_at": {"$lt": to_naive(now)}})
        try:
            self._db.id_assertions.insert_one({"_id": f"{client_id} {jti}", "expires_at": to_naive(expires_at)})
        except DuplicateKeyError:
            return False
        return True

    def close(self) -> None:
        self._client.close()
