"""The production store: MongoDB through pymongo, one multi-document transaction per write.

Collections: ``resources`` (the current version of each resource, ``_id`` = ``"Type/id"``, with its
index values embedded as laid out in ``mongo_search``), ``history`` (one document per version,
``_id`` = ``"Type/id/version"``) and ``claims`` (one counter per key that concurrent transactions must
not both pass), and ``migrations`` (one document per one-time conversion of stored data already done).
A history entry also carries ``hk``, its place in history order as one string, and
``end``, when the next version replaced it: they serve keyset paging and ``_at``. Bodies are stored as
the exact JSON bytes and returned unchanged; datetimes as naive UTC. Two transactions
writing the same document conflict and one is retried, which is what makes the version checks and
conditional creates a ``work`` function performs race-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pymongo import IndexModel, MongoClient, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from fhir_server.search.plan import AnyCriterion, Include, SearchPlan, SortKey
from fhir_server.search.ucum import CANONICAL_SYSTEM, UCUM_SYSTEM
from fhir_server.storage.base import (
    CHANGED_LIMIT,
    ChangedMatch,
    HistoryPage,
    HistoryQuery,
    Hit,
    ResourceWrite,
    SearchPage,
    StoredResource,
    gather_includes,
    history_key,
)
from fhir_server.storage.mongo_search import (
    DEFAULT_ORDER,
    RESOURCE_FIELDS,
    RESOURCE_INDEXES,
    Compiler,
    Fetch,
    Filter,
    canonical_quantities,
    creation_key,
    index_fields,
    keyset_match,
    later_than,
    revinclude_filter,
    sort_stages,
)

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OPEN_END = datetime(9999, 12, 31)  # ``end`` of a history entry that is still the current version
HISTORY_ORDER = [("hk", -1)]
HISTORY_INDEXES: dict[str, list[tuple[str, int]]] = {
    "key": [("hk", 1)],
    "type_key": [("type", 1), ("hk", 1)],
    "instance_key": [("type", 1), ("id", 1), ("hk", 1)],
}
_NEEDS_REPLICA_SET = (
    "MongoDB storage needs multi-document transactions, which a standalone mongod does not offer. "
    "Run it as a replica set (a single node is enough: start `mongod --replSet rs0`, then run "
    "`rs.initiate()` once in mongosh) or connect through mongos."
)


def naive_utc(moment: datetime) -> datetime:
    """How every backend stores a moment: UTC, millisecond precision (naive for SecantusDB)."""
    utc = moment.astimezone(UTC)
    return utc.replace(tzinfo=None, microsecond=utc.microsecond // 1000 * 1000)


def _ms(moment: datetime) -> int:
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def history_sort_key(moment: datetime, resource_type: str, id: str, version: int) -> str:
    """The history order (last_updated, type, id, version) as one string ``hk``: fixed-width numbers
    and a space, which sorts below every character of a type or an id. One field serves both the
    sort and the keyset cursor, with no top-level ``$or`` (which SecantusDB serves by a full scan)."""
    return f"{_ms(moment):015d} {resource_type} {id} {version:010d}"


def history_filters(query: HistoryQuery) -> tuple[Filter, Filter]:
    """The filter counting all entries the query selects, and the one selecting its page: strictly
    older than the ``before`` cursor."""
    base: Filter = {}
    if query.resource_type is not None:
        base["type"] = query.resource_type
    if query.id is not None:
        base["id"] = query.id
    key: Filter = {}
    if query.since is not None:
        key["$gte"] = f"{_ms(query.since):015d}"
    if query.at is not None:
        # current during [low, high): written before high, and not replaced at or before low
        key["$lt"] = f"{_ms(query.at[1]):015d}"
    if key:
        base["hk"] = key
    if query.at is not None:
        base["end"] = {"$gt": naive_utc(query.at[0])}
    if query.before is None:
        return base, base
    rtype, rid, version = query.before[1].split("/")
    cursor = history_sort_key(query.before[0], rtype, rid, int(version))
    return base, {**base, "hk": {**key, "$lt": min(cursor, key.get("$lt", cursor))}}


def members_filter(query: Filter, plan: SearchPlan) -> Filter:
    """``query`` limited to the hits of ``plan`` (see ``Storage.search``)."""
    snapshot = plan.snapshot
    if snapshot is None:
        return query
    if plan.sort:
        return {**query, "lu": {"$lte": naive_utc(snapshot.stable)}}
    return {**query, "ck": {"$lt": later_than(_ms(snapshot.began))}}


def changed_filter(query: Filter, plan: SearchPlan) -> Filter:
    """``query`` limited to the changed matches of a sorted walk: written after ``snapshot.stable``
    (that condition leads: few resources are that recent), created at or before ``snapshot.began``."""
    assert plan.snapshot is not None
    return {"lu": {"$gt": naive_utc(plan.snapshot.stable)}, **query,
            "ck": {"$lt": later_than(_ms(plan.snapshot.began))}}


def _position_value(key: SortKey, value: Any) -> Any:
    """A sort value as positions carry it: ``_lastUpdated`` in ms, like SQLite and the service."""
    return _ms(value.replace(tzinfo=UTC)) if key.param == "_lastUpdated" and value is not None else value


def _db_sort_value(key: SortKey, value: Any) -> Any:
    if key.param == "_lastUpdated" and isinstance(value, int):
        return naive_utc(_EPOCH + timedelta(milliseconds=value))
    return value


def _to_stored(doc: dict[str, Any]) -> StoredResource:
    return StoredResource(doc["type"], doc["id"], doc["v"], doc["lu"].replace(tzinfo=UTC), doc["d"],
                          bytes(doc["body"]))


def _fetcher(db: Database, session: ClientSession | None) -> Fetch:
    def fetch(query: Filter, projection: dict[str, int], limit: int) -> list[dict[str, Any]]:
        return list(db.resources.find(query, projection, session=session).limit(limit))

    return fetch


def _find(db: Database, session: ClientSession | None, types: Sequence[str], criteria: Sequence[AnyCriterion],
          limit: int) -> list[StoredResource]:
    if limit <= 0:
        return []
    query = Compiler(_fetcher(db, session)).filter(types, criteria)
    cursor = db.resources.find(query, RESOURCE_FIELDS, session=session).sort(DEFAULT_ORDER).limit(limit)
    return [_to_stored(doc) for doc in cursor]


class MongoTransaction:
    """The view of the store inside one multi-document transaction: every call uses its session."""

    def __init__(self, db: Database, session: ClientSession) -> None:
        self._db = db
        self._session = session

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        doc = self._db.resources.find_one({"_id": f"{resource_type}/{id}"}, RESOURCE_FIELDS, session=self._session)
        return _to_stored(doc) if doc else None

    def find(self, resource_type: str, criteria: Sequence[AnyCriterion], limit: int) -> list[StoredResource]:
        return _find(self._db, self._session, (resource_type,), criteria, limit)

    def write(self, change: ResourceWrite) -> None:
        self.write_many((change,))

    def write_many(self, changes: Sequence[ResourceWrite]) -> None:
        """Store new versions with three bulk requests (current versions, history entries, and the
        ``end`` of the versions they replace) instead of three round trips per version."""
        if not changes:
            return
        current, history, ends = [], [], []
        for change in changes:
            key = f"{change.resource_type}/{change.id}"
            updated = naive_utc(change.last_updated)
            fields = {"type": change.resource_type, "id": change.id, "v": change.version, "lu": updated,
                      "d": change.deleted, "body": change.body}
            index = index_fields(change.resource_type, () if change.deleted else change.index)
            created = creation_key(_ms(change.last_updated), key)
            current.append(UpdateOne({"_id": key}, {"$set": {**fields, **index}, "$setOnInsert": {"ck": created}},
                                     upsert=True))
            order = history_sort_key(change.last_updated, change.resource_type, change.id, change.version)
            history.append({"_id": f"{key}/{change.version}", **fields, "hk": order, "end": OPEN_END})
            if change.version > 1:
                ends.append(UpdateOne({"_id": f"{key}/{change.version - 1}"}, {"$set": {"end": updated}}))
        self._db.resources.bulk_write(current, ordered=True, session=self._session)
        self._db.history.insert_many(history, ordered=True, session=self._session)
        if ends:
            self._db.history.bulk_write(ends, ordered=True, session=self._session)

    def claim(self, key: str) -> None:
        """Write the key's claim document: a concurrent transaction claiming the same key gets a
        write conflict and is retried once this one has committed, so it sees this one's writes."""
        self._db.claims.update_one({"_id": key}, {"$inc": {"n": 1}}, upsert=True, session=self._session)


_CANONICAL_QUANTITIES = "canonical-quantities"


def _add_canonical_quantities(db: Database) -> None:
    """Give the UCUM quantities of resources written before canonical units (``search.ucum``) their
    ``<param>:canonical`` elements, once. A resource rewritten meanwhile (another ``v``) or already
    converted (by a concurrent process) is left alone: its current index values are already right."""
    if db.migrations.find_one({"_id": _CANONICAL_QUANTITIES}) is not None:
        return
    updates = []
    for doc in db.resources.find({"qty.s": UCUM_SYSTEM}, {"qty": 1, "v": 1}):
        added = canonical_quantities(doc["qty"])
        if added:
            updates.append(UpdateOne({"_id": doc["_id"], "v": doc["v"], "qty.s": {"$ne": CANONICAL_SYSTEM}},
                                     {"$push": {"qty": {"$each": added}}}))
    if updates:
        db.resources.bulk_write(updates, ordered=False)
    db.migrations.update_one({"_id": _CANONICAL_QUANTITIES}, {"$set": {"done": True}}, upsert=True)


class MongoStorage:
    inline_reads = False  # every read is a network round trip: keep it off the event loop

    def __init__(self, url: str) -> None:
        self._client: MongoClient = MongoClient(url)
        self._db = self._client.get_default_database(default="fhir")
        hello = self._client.admin.command("hello")
        if "setName" not in hello and hello.get("msg") != "isdbgrid":
            self._client.close()
            raise RuntimeError(_NEEDS_REPLICA_SET)
        self._db.resources.create_indexes([IndexModel(keys, name=name) for name, keys in RESOURCE_INDEXES.items()])
        self._db.history.create_indexes([IndexModel(keys, name=name) for name, keys in HISTORY_INDEXES.items()])
        _add_canonical_quantities(self._db)

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        doc = self._db.resources.find_one({"_id": f"{resource_type}/{id}"}, RESOURCE_FIELDS)
        return _to_stored(doc) if doc else None

    def read_version(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        doc = self._db.history.find_one({"_id": f"{resource_type}/{id}/{version}"}, RESOURCE_FIELDS)
        return _to_stored(doc) if doc else None

    def history(self, query: HistoryQuery) -> HistoryPage:
        count_filter, page_filter = history_filters(query)
        docs = list(self._db.history.find(page_filter, RESOURCE_FIELDS).sort(HISTORY_ORDER).limit(query.count + 1))
        entries = [_to_stored(doc) for doc in docs[: query.count]]
        next_cursor = None
        if len(docs) > query.count and entries:
            last = entries[-1]
            next_cursor = (last.last_updated, history_key(last.resource_type, last.id, last.version))
        return HistoryPage(entries, self._db.history.count_documents(count_filter), next_cursor)

    def search(self, plan: SearchPlan) -> SearchPage:
        query = Compiler(_fetcher(self._db, None)).filter(plan.resource_types, plan.criteria)
        hits = self._hits(query, plan) if plan.count > 0 else []
        changed = self._changed(query, plan) if plan.sort and plan.snapshot is not None else []
        return SearchPage(hits, changed)

    def count(self, plan: SearchPlan, limit: int | None = None) -> int:
        query = members_filter(Compiler(_fetcher(self._db, None)).filter(plan.resource_types, plan.criteria), plan)
        return self._db.resources.count_documents(query, **({} if limit is None else {"limit": limit}))

    def _hits(self, query: Filter, plan: SearchPlan) -> list[Hit]:
        forward = plan.before is None
        position = plan.after if forward else plan.before
        members = members_filter(query, plan)
        projection = {**RESOURCE_FIELDS, "ck": 1}
        if not plan.sort:
            if position is not None:
                bound = dict(members.get("ck", {}))
                op = "$gt" if forward else "$lt"
                bound[op] = position[-1] if op not in bound else min(bound[op], position[-1])
                members = {**members, "ck": bound}
            docs = self._db.resources.find(members, projection).sort("ck", 1 if forward else -1).limit(plan.count + 1)
            return [Hit(_to_stored(doc), (doc["ck"],)) for doc in docs]
        fields, order = sort_stages(plan.sort, forward)
        pipeline: list[dict[str, Any]] = [{"$match": members}, {"$addFields": fields}]
        if position is not None:
            values = [_db_sort_value(key, value) for key, value in zip(plan.sort, position, strict=False)]
            pipeline.append({"$match": keyset_match(plan.sort, [*values, position[-1]], forward)})
        pipeline += [{"$sort": dict(order)}, {"$limit": plan.count + 1},
                     {"$project": {**projection, **{f"_k{i}": 1 for i in range(len(plan.sort))}}}]
        return [Hit(_to_stored(doc), (*(_position_value(key, doc.get(f"_k{i}")) for i, key in enumerate(plan.sort)),
                                      doc["ck"]))
                for doc in self._db.resources.aggregate(pipeline)]

    def _changed(self, query: Filter, plan: SearchPlan) -> list[ChangedMatch]:
        assert plan.snapshot is not None
        stable_ms = _ms(plan.snapshot.stable)
        docs = self._db.resources.find(changed_filter(query, plan), {**RESOURCE_FIELDS, "ck": 1}).sort("ck")
        docs = docs.limit(CHANGED_LIMIT + 1)
        changed = []
        for doc in docs:
            instance = {"type": doc["type"], "id": doc["id"]}
            at = self._db.history.find_one({**instance, "hk": {"$lt": later_than(stable_ms)}}, RESOURCE_FIELDS,
                                           sort=[("hk", -1)])
            after = self._db.history.find_one({**instance, "hk": {"$gte": later_than(stable_ms)}}, RESOURCE_FIELDS,
                                              sort=[("hk", 1)])
            changed.append(ChangedMatch(_to_stored(doc), (doc["ck"],), _to_stored(at) if at else None,
                                        _to_stored(after) if after else None))
        return changed

    def includes(self, matches: Sequence[StoredResource], includes: Sequence[Include]) -> list[StoredResource]:
        return gather_includes(matches, includes, self._include_one)

    def _include_one(self, frontier: list[StoredResource], inc: Include) -> list[StoredResource]:
        if inc.source_type == "*" and not inc.reverse:  # _include=*: every reference of every source
            types = dict.fromkeys(s.resource_type for s in frontier)
            return [r for t in types for r in self._include_one(frontier, replace(inc, source_type=t))]
        sources = [s for s in frontier if s.resource_type == (inc.target_type if inc.reverse else inc.source_type)
                   or (inc.reverse and inc.target_type is None)]
        if not sources:
            return []
        if inc.reverse:
            return self._stored(revinclude_filter(inc, {s.resource_type for s in sources}, {s.id for s in sources}))
        docs = self._db.resources.find({"_id": {"$in": [f"{inc.source_type}/{s.id}" for s in sources]}}, {"ref": 1})
        pkey = f"{inc.source_type}.{inc.param}"
        targets = {f"{r['tt']}/{r['ti']}" for doc in docs for r in doc["ref"]
                   if (inc.param == "*" or r["p"] == pkey) and r["tt"] is not None and r["ti"] is not None
                   and (inc.target_type is None or r["tt"] == inc.target_type)}
        return self._stored({"_id": {"$in": sorted(targets)}, "d": False})

    def _stored(self, query: Filter) -> list[StoredResource]:
        return [_to_stored(doc) for doc in self._db.resources.find(query, RESOURCE_FIELDS).sort("_id")]

    def yield_to_writes(self) -> None:
        """Nothing to wait for: MongoDB's locks are held in the server, not in this process."""

    def run_in_transaction(self, work: Callable[[MongoTransaction], T]) -> T:
        """Runs ``work`` in one transaction; pymongo retries the whole function on a transient error
        (a write conflict) or an unknown commit result, so ``work`` may run more than once."""
        with self._client.start_session() as session:
            return session.with_transaction(
                lambda s: work(MongoTransaction(self._db, s)),
                read_concern=ReadConcern("snapshot"),
                write_concern=WriteConcern("majority"),
                read_preference=ReadPreference.PRIMARY,
            )

    def close(self) -> None:
        self._client.close()
