"""The embedded default store: stdlib sqlite3 in WAL mode.

Reads use one connection per thread (WAL readers never block the writer); writes go through a single
writer connection under ``BEGIN IMMEDIATE``, so each ``run_in_transaction`` is atomic and fully
serialized: current version, history row and index rows commit together or not at all.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, TypeVar

from fhir_server.search.index_values import (
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.plan import AnyCriterion, Include, SearchPlan
from fhir_server.storage.base import (
    HOLDER_SYSTEM,
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
from fhir_server.storage.sqlite_schema import (
    INDEX_TABLES,
    NameKeys,
    create_schema,
    holder_keys,
    holders_column,
    union_params,
)
from fhir_server.storage.sqlite_search import ID, LAST_UPDATED, Body, Compiler, Fragment, keyset

T = TypeVar("T")

_RESOURCE_COLUMNS = "type, id, version, last_updated, deleted, body"
_HISTORY_COLUMNS = _RESOURCE_COLUMNS
_CURRENT_COLUMNS = f"{_RESOURCE_COLUMNS}, holders"
"""A current version as read from ``resource``: with its record holders."""
_SHARED_BODY = b""
"""The history ``body`` of a version that is still current and not a deletion: its JSON is the
``resource`` row's, so a resource written once (most clinical data, every AuditEvent) is stored
once. The row gets its own copy when a later version replaces it (``_WriteBatch.flush``). A
deletion's body is empty too, but ``deleted`` tells the two apart."""
_HISTORY_SELECT = ("h.type, h.id, h.version, h.last_updated, h.deleted, CASE WHEN h.deleted OR length(h.body) "
                   "THEN h.body ELSE (SELECT r.body FROM resource r WHERE r.type = h.type AND r.id = h.id) END")
_MAX_GROUP = 256  # works per group commit
_WRITE_LOCK_TIMEOUT_S = 30.0
CHECKPOINT_INTERVAL_S = 1.0

log = logging.getLogger("fhir_server.storage")


class _Pending:
    """One ``run_in_transaction`` call waiting for (or taken into) a group commit."""

    __slots__ = ("work", "result", "error", "done")

    def __init__(self, work: Callable[[SqliteTransaction], Any]) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _row_to_stored(row: Sequence[Any]) -> StoredResource:
    """A row of ``_CURRENT_COLUMNS`` (``holders`` kept, ``|a|b|`` or NULL for none) or of
    ``_HISTORY_SELECT`` (holders left to the body)."""
    holders = None
    if len(row) > 6:
        holders = tuple(row[6][1:-1].split("|")) if row[6] else ()
    return StoredResource(row[0], row[1], row[2], from_ms(row[3]), bool(row[4]), bytes(row[5]), holders)


def _add_index_rows(rows: dict[str, list[tuple]], pk: int, resource_type: str, values: Iterable[IndexValue],
                    key: Callable[[str], int], holders: int | None) -> None:
    """Add the index rows of one resource to ``rows`` (by table); ``seq`` numbers them within it, and
    each carries ``holders``, the key of the resource's record holders (``sqlite_schema``).

    ``_id`` and ``_lastUpdated`` have no rows: the resource table's ``(type, id)`` and ``(type,
    last_updated)`` serve them; a union parameter's values are its parts' (``stored_names``). A
    token's ``(pkey, system, code)`` is stored once per resource (a repeat keeps only its display
    text, which ``:text`` reads), so ``system|code`` matches each resource once and large results
    are counted without DISTINCT.
    """
    prefix = resource_type + "."
    group = seq = 0
    tokens: set[tuple[str, str | None, str]] = set()
    unions = union_params(resource_type)
    for value in values:
        if value.param in _NO_ROWS or unions and value.param.partition(":")[0] in unions:
            continue
        if value.__class__ is CompositeValue:
            group += 1
            for i, part in enumerate(value.parts):
                seq += 1
                table, columns = _LAYOUT[part.__class__]
                rows[table].append((pk, seq, key(f"{prefix}{value.param}${i}"), group, *columns(part), holders))
            continue
        if value.__class__ is TokenValue and value.code is not None:
            unique = (value.param, value.system, value.code)
            if unique in tokens:
                if value.text is None:
                    continue
                value = TokenValue(value.param, None, None, value.text)
            tokens.add(unique)
        seq += 1
        table, columns = _LAYOUT[value.__class__]
        rows[table].append((pk, seq, key(prefix + value.param), None, *columns(value), holders))


def _stored_pks(conn: sqlite3.Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """``pk`` of the resources among ``keys`` that are stored, a few hundred per query."""
    by_type: dict[str, list[str]] = {}
    for resource_type, id in keys:
        by_type.setdefault(resource_type, []).append(id)
    found: dict[tuple[str, str], int] = {}
    for resource_type, ids in by_type.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            sql = f"SELECT id, pk FROM resource WHERE type = ? AND id IN ({','.join('?' * len(chunk))})"
            found.update(((resource_type, id), pk) for id, pk in conn.execute(sql, [resource_type, *chunk]))
    return found


class _WriteBatch:
    """Rows gathered by ``SqliteTransaction.write_many``, written by ``flush``."""

    def __init__(self, next_pk: int | None = None) -> None:
        self.next_pk = next_pk
        self.pks: dict[tuple[str, str], int] = {}
        self.inserts: list[tuple] = []
        self.updates: list[tuple] = []
        self.history: list[tuple] = []
        self.index: dict[str, list[tuple]] = {t: [] for t in INDEX_TABLES}

    def flush(self, conn: sqlite3.Connection) -> None:
        if self.updates:
            stale = [(u[-1],) for u in self.updates]
            for table in INDEX_TABLES:
                conn.executemany(f"DELETE FROM {table} WHERE pk = ?", stale)
            conn.executemany("UPDATE history SET body = r.body FROM resource r WHERE r.pk = ? "
                             "AND history.type = r.type AND history.id = r.id AND history.version = r.version "
                             "AND history.deleted = 0 AND length(history.body) = 0", stale)
            conn.executemany("UPDATE resource SET version = ?, last_updated = ?, deleted = ?, body = ?, holders = ? "
                             "WHERE pk = ?", self.updates)
        if self.inserts:
            conn.executemany(f"INSERT INTO resource (pk, {_RESOURCE_COLUMNS}, holders) VALUES (?,?,?,?,?,?,?,?)",
                             self.inserts)
        conn.executemany(f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES (?,?,?,?,?,?)", self.history)
        for table, rows in self.index.items():
            if rows:
                rows.sort(key=_PKEY)  # neighbouring keys in the (pkey, ...) B-trees: ~10% less CPU, 25% less time
                conn.executemany(_INSERT[table], rows)


_NO_ROWS = frozenset({ID, LAST_UPDATED})
_PKEY = itemgetter(2)  # rows are (pk, seq, pkey, grp, ...)
_LAYOUT: dict[type, tuple[str, Callable[[Any], tuple]]] = {
    StringValue: ("idx_string", attrgetter("normalized", "exact")),
    TokenValue: ("idx_token", attrgetter("system", "code", "text")),
    ReferenceValue: ("idx_reference", attrgetter("target_type", "target_id", "url")),
    DateValue: ("idx_date", attrgetter("low", "high")),
    NumberValue: ("idx_number", lambda v: (v.value,)),
    QuantityValue: ("idx_quantity", attrgetter("value", "system", "code", "unit")),
    UriValue: ("idx_uri", lambda v: (v.uri,)),
}
"""Per index-value class: its table and its columns after ``(pk, seq, pkey, grp)``."""


_INSERT = {
    "idx_string": "INSERT INTO idx_string VALUES (?,?,?,?,?,?,?)",
    "idx_token": "INSERT INTO idx_token VALUES (?,?,?,?,?,?,?,?)",
    "idx_reference": "INSERT INTO idx_reference VALUES (?,?,?,?,?,?,?,?)",
    "idx_date": "INSERT INTO idx_date VALUES (?,?,?,?,?,?,?)",
    "idx_number": "INSERT INTO idx_number VALUES (?,?,?,?,?,?)",
    "idx_quantity": "INSERT INTO idx_quantity VALUES (?,?,?,?,?,?,?,?,?)",
    "idx_uri": "INSERT INTO idx_uri VALUES (?,?,?,?,?,?)",
}


class SqliteTransaction:
    """The view of the store inside one serialized write transaction."""

    def __init__(self, conn: sqlite3.Connection, params: NameKeys, holder_sets: NameKeys) -> None:
        self._conn = conn
        self._params = params
        self._holder_sets = holder_sets

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        row = self._conn.execute(
            f"SELECT {_CURRENT_COLUMNS} FROM resource WHERE type = ? AND id = ?", (resource_type, id)
        ).fetchone()
        return _row_to_stored(row) if row else None

    def find(self, resource_type: str, criteria: Sequence[AnyCriterion], limit: int) -> list[StoredResource]:
        keys = partial(self._params.lookup, self._conn, writing=True)
        return _find(self._conn, keys, partial(holder_keys, self._conn), (resource_type,), criteria, limit)

    def write(self, change: ResourceWrite) -> None:
        self.write_many((change,))

    def write_many(self, changes: Sequence[ResourceWrite]) -> None:
        """Store new versions with one ``executemany`` per table, so the per-row work stays in
        SQLite's C code (a transaction bundle writes hundreds at once). A new resource's ``pk`` is
        chosen here, the next free one: this transaction holds the only write lock."""
        conn = self._conn
        stored = _stored_pks(conn, {(c.resource_type, c.id) for c in changes})
        batch = _WriteBatch()
        key_of = partial(self._params.ensure, conn)
        holder_set_of = partial(self._holder_sets.ensure, conn)
        for change in changes:
            key = (change.resource_type, change.id)
            if key in batch.pks:  # the same resource twice: store the first version before the second
                batch.flush(conn)
                stored[key] = batch.pks[key]
                batch = _WriteBatch(batch.next_pk)
            ms = to_ms(change.last_updated)
            row = (change.resource_type, change.id, change.version, ms, int(change.deleted), change.body)
            holders = None if change.deleted else holders_column(
                v.code for v in change.index
                if isinstance(v, TokenValue) and v.system == HOLDER_SYSTEM and v.param == "_security" and v.code)
            found = stored.get(key)
            if found is None:
                if batch.next_pk is None:
                    batch.next_pk = conn.execute("SELECT coalesce(max(pk), 0) + 1 FROM resource").fetchone()[0]
                pk = batch.next_pk
                batch.next_pk += 1
                batch.inserts.append((pk, *row, holders))
            else:
                pk = found
                batch.updates.append((change.version, ms, int(change.deleted), change.body, holders, pk))
            batch.pks[key] = pk
            batch.history.append(row if change.deleted else (*row[:5], _SHARED_BODY))
            if not change.deleted:
                _add_index_rows(batch.index, pk, change.resource_type, change.index, key_of,
                                None if holders is None else holder_set_of(holders))
        batch.flush(conn)

    def claim(self, key: str) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already serializes every write transaction."""


def _walk_state(plan: SearchPlan, changed: bool = False) -> Fragment | None:
    """The condition on a candidate's state (alias ``s``) for belonging to the walk of ``plan`` (see
    ``Storage.search``), or with ``changed`` to the changed matches of a sorted walk. A resource's
    creation time is its first version's."""
    snapshot = plan.snapshot
    if snapshot is None:
        return None
    began = to_ms(snapshot.began)
    created = ("EXISTS (SELECT 1 FROM history h WHERE h.type = s.type AND h.id = s.id AND h.version = 1 "
               "AND h.last_updated <= ?)")
    if not plan.sort:
        return f"(s.last_updated <= ? OR {created})", [began, began]
    if changed:
        return created, [began]
    return "s.last_updated <= ?", [to_ms(snapshot.stable)]


def _outside_walk(plan: SearchPlan) -> tuple[int, Fragment | None]:
    """``since`` and a condition on ``s``: the matches that ``_walk_state`` leaves out are those
    updated after ``since`` that also meet the condition."""
    assert plan.snapshot is not None
    began = to_ms(plan.snapshot.began)
    if plan.sort:
        return to_ms(plan.snapshot.stable), None
    return began, ("NOT EXISTS (SELECT 1 FROM history h WHERE h.type = s.type AND h.id = s.id AND h.version = 1 "
                   "AND h.last_updated <= ?)", [began])


def _count(conn: sqlite3.Connection, body: Body, limit: int | None) -> int:
    sql, params = body.sql(body.pk if body.distinct else "1")  # no column to read: twice as fast
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return conn.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0]


def _counter(conn: sqlite3.Connection) -> Callable[[Fragment], int]:
    def count(fragment: Fragment) -> int:
        return conn.execute(f"SELECT COUNT(*) FROM ({fragment[0]})", fragment[1]).fetchone()[0]

    return count


def _candidates(conn: sqlite3.Connection, body: Body, limit: int, forward: bool = True,
                after: int | None = None) -> list[int]:
    """The pks of the first ``limit`` candidates in pk order (descending when not ``forward``),
    strictly beyond the pk ``after`` when given."""
    if after is not None:
        body.add((f"{body.pk} {'>' if forward else '<'} ?", [after]))
    sql, params = body.sql(body.pk)
    sql += f" ORDER BY {body.pk} {'ASC' if forward else 'DESC'} LIMIT ?"
    return [row[0] for row in conn.execute(sql, [*params, limit])]


def _fetch(conn: sqlite3.Connection, pks: Sequence[int]) -> dict[int, StoredResource]:
    """The current rows of ``pks`` (a page: the only time a search reads the wide rows)."""
    if not pks:
        return {}
    rows = conn.execute(f"SELECT pk, {_CURRENT_COLUMNS} FROM resource WHERE pk IN ({','.join('?' * len(pks))})",
                        list(pks))
    return {row[0]: _row_to_stored(row[1:]) for row in rows}


def _find(conn: sqlite3.Connection, keys: Callable[[Sequence[str]], list[int]],
          holders: Callable[[str], list[int]], types: Sequence[str], criteria: Sequence[AnyCriterion],
          limit: int) -> list[StoredResource]:
    body = Compiler(keys, holders).select(types, criteria, _counter(conn))
    pks = _candidates(conn, body, limit)
    found = _fetch(conn, pks)
    return [found[pk] for pk in pks if pk in found]


def _begin(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``, trying again every millisecond while another process (``serve --workers``)
    holds the write lock. SQLite's own busy handler sleeps up to 100 ms between tries, leaving the
    lock unused for much of that time when processes take turns writing large bundles."""
    deadline = time.monotonic() + _WRITE_LOCK_TIMEOUT_S
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.001)


class SqliteStorage:
    inline_reads = True  # a read is a B-tree lookup of microseconds: not worth a thread hop

    def __init__(self, path: str) -> None:
        self._path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._all_connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._params = NameKeys("param")
        self._holder_sets = NameKeys("holder_set")
        self._checkpointer: _Checkpointer | None = None  # started by the first write
        self._writing_thread: int | None = None  # the thread holding the database's write lock
        self._not_writing = threading.Event()
        self._not_writing.set()
        self._writer = self._connect()
        create_schema(self._writer)
        self._writer.execute("PRAGMA busy_timeout=0")  # _begin waits for the write lock instead

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        # the checkpoint inside a COMMIT is only a backstop for a stalled ``_Checkpointer``: at ~80 MB
        # of WAL instead of 4 MB, since a transaction bundle writes several MB and each one is a sync
        conn.execute("PRAGMA wal_autocheckpoint=20000")
        with self._connections_lock:
            self._all_connections.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        row = self._reader().execute(
            f"SELECT {_CURRENT_COLUMNS} FROM resource WHERE type = ? AND id = ?", (resource_type, id)
        ).fetchone()
        return _row_to_stored(row) if row else None

    def read_version(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        row = self._reader().execute(
            f"SELECT {_HISTORY_SELECT} FROM history h WHERE h.type = ? AND h.id = ? AND h.version = ?",
            (resource_type, id, version),
        ).fetchone()
        return _row_to_stored(row) if row else None

    def history(self, query: HistoryQuery) -> HistoryPage:
        where, params = [], []
        if query.resource_type is not None:
            where.append("type = ?")
            params.append(query.resource_type)
        if query.id is not None:
            where.append("id = ?")
            params.append(query.id)
        if query.since is not None:
            where.append("last_updated >= ?")
            params.append(to_ms(query.since))
        if query.at is not None:
            # current during [low, high): written before high, and not replaced at or before low
            where.append(
                "last_updated < ? AND NOT EXISTS (SELECT 1 FROM history n WHERE n.type = h.type "
                "AND n.id = h.id AND n.version = h.version + 1 AND n.last_updated <= ?)"
            )
            params += [to_ms(query.at[1]), to_ms(query.at[0])]
        base_where = list(where)
        base_params = list(params)
        if query.before is not None:
            rtype, rid, version = query.before[1].split("/")
            where.append("(last_updated, type, id, version) < (?, ?, ?, ?)")
            params += [to_ms(query.before[0]), rtype, rid, int(version)]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        conn = self._reader()
        rows = conn.execute(
            f"SELECT {_HISTORY_SELECT} FROM history h {clause} "
            "ORDER BY h.last_updated DESC, h.type DESC, h.id DESC, h.version DESC LIMIT ?",
            [*params, query.count + 1],
        ).fetchall()
        entries = [_row_to_stored(r) for r in rows[: query.count]]
        next_cursor = None
        if len(rows) > query.count and entries:
            last = entries[-1]
            next_cursor = (last.last_updated, history_key(last.resource_type, last.id, last.version))
        base_clause = f"WHERE {' AND '.join(base_where)}" if base_where else ""
        total = conn.execute(f"SELECT COUNT(*) FROM history h {base_clause}", base_params).fetchone()[0]
        return HistoryPage(entries, total, next_cursor)

    def search(self, plan: SearchPlan) -> SearchPage:
        conn = self._reader()
        conn.execute("BEGIN")  # one read snapshot for the page and the changed matches
        try:
            hits, tally = self._hits(conn, plan) if plan.count > 0 else ([], None)
            changed = self._changed(conn, plan) if plan.sort and plan.snapshot is not None else []
        finally:
            conn.execute("COMMIT")
        return SearchPage(hits, changed, tally)

    def count(self, plan: SearchPlan, limit: int | None = None) -> int:
        """Counted from the index alone: every match, less the few that fail the walk's state
        (written after the snapshot, so found through ``resource_type_updated``)."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            outside = 0
            if plan.snapshot is not None:
                since, failing = _outside_walk(plan)
                body = self._compiler(conn).recent(plan.resource_types, plan.criteria, since, failing)
                outside = _count(conn, body, None)
            body = self._compiler(conn).select(plan.resource_types, plan.criteria, _counter(conn))
            counted = _count(conn, body, None if limit is None else limit + outside) - outside
        finally:
            conn.execute("COMMIT")
        return counted if limit is None else min(counted, limit)

    def _compiler(self, conn: sqlite3.Connection) -> Compiler:
        return Compiler(partial(self._params.lookup, conn), partial(holder_keys, conn))

    def _hits(self, conn: sqlite3.Connection, plan: SearchPlan) -> tuple[list[Hit], int | None]:
        """The page, and the tally when the plan asks for one, the page is an unsorted walk's first,
        its candidates do not stream in pk order and some criterion is checked per candidate:
        finding the page then checks every match anyway, so the walk up to the tally is one
        statement with the page as its head, where a separate count would check every match a second
        time. (A streaming page stops after ``count + 1`` rows, and a count that reads only the
        driving index needs no check per match: alone, either is cheaper.)"""
        compiler = self._compiler(conn)
        body = compiler.select(plan.resource_types, plan.criteria, _counter(conn), _walk_state(plan))
        forward = plan.before is None
        position = plan.after if forward else plan.before
        tally = None
        if not plan.sort:
            up_to = plan.tally if position is None and forward and not body.ordered and body.probed else None
            limit = plan.count + 1 if up_to is None else max(plan.count + 1, up_to)
            pks = _candidates(conn, body, limit, forward, position[-1] if position is not None else None)
            if up_to is not None:
                tally, pks = min(len(pks), up_to), pks[: plan.count + 1]
            positions = [(pk,) for pk in pks]
        else:
            positions = self._sorted(conn, compiler, body, plan, forward, position)
            pks = [p[-1] for p in positions]
        found = _fetch(conn, pks)
        return [Hit(found[p[-1]], p) for p in positions if p[-1] in found], tally

    def _sorted(self, conn: sqlite3.Connection, compiler: Compiler, body: Body, plan: SearchPlan,
                forward: bool, position: tuple[Any, ...] | None) -> list[tuple[Any, ...]]:
        """The positions (sort values, pk) of a sorted page: every candidate's sort values are
        computed once, then ordered."""
        values = [compiler.sort_value(key, plan.resource_types, body.pk) for key in plan.sort]
        columns = ", ".join([f"{body.pk} AS pk", *(f"{sql} AS k{i}" for i, (sql, _) in enumerate(values))])
        inner, inner_params = body.sql(columns)
        inner_params = [*(p for _, value_params in values for p in value_params), *inner_params]
        keys = [(f"c.k{i}", [], key.descending) for i, key in enumerate(plan.sort)]
        where, where_params = keyset(keys, "c.pk", position, forward) if position is not None else ("1", [])
        order = [f"{expr} IS {'' if forward else 'NOT '}NULL, {expr} {'DESC' if descending == forward else 'ASC'}"
                 for expr, _, descending in keys]
        order.append(f"c.pk {'ASC' if forward else 'DESC'}")
        sql = (f"WITH c AS MATERIALIZED ({inner}) SELECT {', '.join(f'c.k{i}' for i in range(len(keys)))}, c.pk "
               f"FROM c WHERE {where} ORDER BY {', '.join(order)} LIMIT ?")
        return [tuple(row) for row in conn.execute(sql, [*inner_params, *where_params, plan.count + 1])]

    def _changed(self, conn: sqlite3.Connection, plan: SearchPlan) -> list[ChangedMatch]:
        assert plan.snapshot is not None
        stable = to_ms(plan.snapshot.stable)
        state = _walk_state(plan, changed=True)
        assert state is not None
        body = self._compiler(conn).recent(plan.resource_types, plan.criteria, stable, state)
        sql, params = body.sql(body.pk)
        pks = [row[0] for row in conn.execute(f"{sql} ORDER BY {body.pk} LIMIT ?", [*params, CHANGED_LIMIT + 1])]
        found = _fetch(conn, pks)
        changed = []
        for pk in pks:
            current = found[pk]
            key = (current.resource_type, current.id, stable)
            at = conn.execute(f"SELECT {_HISTORY_SELECT} FROM history h WHERE h.type = ? AND h.id = ? "
                              "AND h.last_updated <= ? ORDER BY h.version DESC LIMIT 1", key).fetchone()
            after = conn.execute(f"SELECT {_HISTORY_SELECT} FROM history h WHERE h.type = ? AND h.id = ? "
                                 "AND h.last_updated > ? ORDER BY h.version LIMIT 1", key).fetchone()
            changed.append(ChangedMatch(current, (pk,), _row_to_stored(at) if at else None,
                                        _row_to_stored(after) if after else None))
        return changed

    def includes(self, matches: Sequence[StoredResource], includes: Sequence[Include]) -> list[StoredResource]:
        conn = self._reader()
        return gather_includes(matches, includes, lambda frontier, inc: self._include_one(conn, frontier, inc))

    def _include_one(self, conn: sqlite3.Connection, frontier: list[StoredResource],
                     inc: Include) -> list[StoredResource]:
        if inc.source_type == "*" and not inc.reverse:  # _include=*: every reference of every source
            types = dict.fromkeys(s.resource_type for s in frontier)
            return [r for t in types for r in self._include_one(conn, frontier, replace(inc, source_type=t))]
        sources = [s for s in frontier if s.resource_type == (inc.target_type if inc.reverse else inc.source_type)
                   or (inc.reverse and inc.target_type is None)]
        if not sources:
            return []
        if inc.source_type == "*":  # _revinclude=*: any reference of any resource
            pkey_sql, pkey_params = "x.pkey IN (SELECT id FROM param)", []
        elif inc.param != "*":
            pkey_sql, pkey_params = "x.pkey = ?", self._params.lookup(conn, [f"{inc.source_type}.{inc.param}"])
        else:
            pkey_sql = "x.pkey IN (SELECT id FROM param WHERE name >= ? AND name < ?)"
            pkey_params = [f"{inc.source_type}.", f"{inc.source_type}/"]
        if inc.reverse:
            ids = [s.id for s in sources]
            types = sorted({s.resource_type for s in sources})
            sql = (f"SELECT {_CURRENT_COLUMNS} FROM resource WHERE pk IN (SELECT x.pk FROM idx_reference x "
                   f"WHERE {pkey_sql} AND x.target_id IN ({','.join('?' * len(ids))}) "
                   f"AND x.target_type IN ({','.join('?' * len(types))}) AND x.grp IS NULL) AND deleted = 0")
            return [_row_to_stored(r) for r in conn.execute(sql, [*pkey_params, *ids, *types])]
        target_sql, target_params = ("AND t.type = ?", [inc.target_type]) if inc.target_type else ("", [])
        sql = (f"SELECT {_CURRENT_COLUMNS} FROM resource WHERE pk IN (SELECT t.pk FROM resource s "
               f"CROSS JOIN idx_reference x ON x.pk = s.pk "
               f"CROSS JOIN resource t ON t.type = x.target_type AND t.id = x.target_id "
               f"WHERE s.type = ? AND s.id IN ({','.join('?' * len(sources))}) AND +{pkey_sql} "
               f"AND x.grp IS NULL {target_sql}) AND deleted = 0")
        params = [inc.source_type, *[s.id for s in sources], *pkey_params, *target_params]
        return [_row_to_stored(r) for r in conn.execute(sql, params)]

    def run_in_transaction(self, work: Callable[[SqliteTransaction], T]) -> T:
        """Group commit: whichever waiting thread gets the writer runs every queued ``work`` in one
        SQLite transaction, each inside its own SAVEPOINT (so one failing work rolls back alone), and
        commits once. Each work stays atomic and serialized; the costly COMMIT is shared."""
        item = _Pending(work)
        with self._queue_lock:
            self._queue.append(item)
        with self._write_lock:
            if self._checkpointer is None:
                self._checkpointer = _Checkpointer(self._path, CHECKPOINT_INTERVAL_S)
            if not item.done:
                with self._queue_lock:
                    batch, self._queue = self._queue[:_MAX_GROUP], self._queue[_MAX_GROUP:]
                self._run_group(batch)
        if item.error is not None:
            raise item.error
        return item.result

    def yield_to_writes(self) -> None:
        """Wait while another thread of this process holds the database's write lock.

        The holder runs Python between SQLite calls, and sqlite3 releases the interpreter lock
        around each of them: any other thread of the process with Python work (validating the next
        bundle) then takes the interpreter lock, and the holder waits for it between rows. Measured
        with 2 server processes taking turns (bench/ingest_bench.py, 60,000 resources), the write
        lock was held about twice its holder's CPU time (830-960 us per resource stored), and each
        process waited for it 35-45% of the time; with this wait, 510 us. The holder's own thread
        never waits here (it validates and indexes inside transactions too). The wait is only for
        speed, so it is bounded like a wait for the lock itself."""
        writing = self._writing_thread
        if writing is not None and writing != threading.get_ident():
            self._not_writing.wait(_WRITE_LOCK_TIMEOUT_S)

    def _run_group(self, batch: list[_Pending]) -> None:
        conn = self._writer
        tx = SqliteTransaction(conn, self._params, self._holder_sets)
        try:
            _begin(conn)
            self._writing_thread = threading.get_ident()
            self._not_writing.clear()
            for item in batch:
                conn.execute("SAVEPOINT work")
                try:
                    item.result = item.work(tx)
                except Exception as error:  # noqa: BLE001 - handed back to the thread that asked
                    conn.execute("ROLLBACK TO work")
                    self._discard_keys()
                    item.error = error
                conn.execute("RELEASE work")
            conn.execute("COMMIT")
            self._params.committed()
            self._holder_sets.committed()
        except BaseException as error:
            self._discard_keys()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for item in batch:
                item.result, item.error = None, item.error or error
            if not isinstance(error, Exception):
                raise
        finally:
            self._writing_thread = None
            self._not_writing.set()
            for item in batch:
                item.done = True

    def _discard_keys(self) -> None:
        self._params.discard()
        self._holder_sets.discard()

    def close(self) -> None:
        with self._write_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        with self._connections_lock:
            for conn in self._all_connections:
                conn.close()
            self._all_connections.clear()
        self._local = threading.local()


class _Checkpointer:
    """Copies committed pages from the WAL into the database file about once a second, from a thread
    and connection of its own, so no COMMIT waits for a checkpoint and none copies a large backlog.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold: every ~80 MB
    here, which made that COMMIT copy and sync ~100 MB of scattered pages at once. For the audit
    writer that meant a burst of a second or more every few seconds, in which searches on the
    other core stalled (p99 > 100 ms) and the trail fell behind. A PASSIVE checkpoint waits for no
    reader or writer; one that finds nothing new to copy costs a few microseconds."""

    def __init__(self, path: str, interval_s: float) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:  # the next round tries again; the COMMIT backstop bounds the WAL
                log.warning("background WAL checkpoint failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._conn.close()
