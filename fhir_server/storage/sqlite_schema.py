"""SQLite tables: current versions, full history, and one index table per search-parameter type.

``history`` is an ordinary rowid table: its rows carry whole resource bodies, which a WITHOUT ROWID
table would keep in its key B-tree (SQLite advises against that for rows this large; measured,
appending versions cost twice the CPU and grew slower as the table grew). A version that is still
current leaves its body to the ``resource`` row (``storage.sqlite._SHARED_BODY``): written once,
stored once.

Index layout choices, each for a measured reason (bench/search_bench.py,
tests/storage/test_sqlite_plans.py):

- Index tables are ``WITHOUT ROWID`` and clustered by ``(pk, seq)``: the rows of one resource sit
  together, so checking a candidate against a criterion, computing its sort value and replacing its
  rows on update are short range reads on the primary key, and no separate ``pk`` index is needed.
  Every secondary index ends in ``pk``, so an equality lookup (``pkey, code, system``) yields
  matches in ``pk`` order, covered by the index, and a page can stop after ``_count`` of them.
- ``pkey`` is a small integer standing for ``"<ResourceType>.<param>"`` (table ``param``), which
  keeps index entries short. Composite values are stored as their parts in the ordinary tables under
  ``"<ResourceType>.<param>$<part>"`` with a shared ``grp`` number. Outside ``idx_token`` (where every
  composite search starts) the indexes leave the parts out (``WHERE grp IS NULL``: less to write) and
  end in ``grp`` (always NULL there) only so that queries saying ``grp IS NULL`` stay covered.
- ``resource_state`` covers what searches check about a candidate (type, deletion, last update, and
  its record holders for the access policy), so those checks never read the wide ``resource`` rows
  that carry the JSON body. ``holders`` (``|Organization/a|Organization/b|``, NULL for none) repeats
  the resource's record-holder security labels: a policy check is then a seek in this small index
  rather than in ``idx_token``, whose size makes per-candidate seeks miss the page cache.
- Every index row repeats those holders too, as the small integer ``h`` (a row of ``holder_set``,
  NULL for none), and every secondary index ends in ``(pk, seq, h)``: the driving index then checks
  the record holder itself, so counting or walking a search's matches seeks no ``resource_state``
  entry per match (1,000 such seeks were a third of a token search's time). The secondary indexes'
  names end in ``_h``; a store without the column gets it, filled, when opened (``_add_holder_keys``).
- A union parameter (``SearchRegistry.unions``: ``Observation.combo-code`` is ``code`` and
  ``component-code``) has no rows of its own; its searches read its parts' rows (``stored_names``).
  For the Synthea resources that is a fifth fewer index rows. ``_id`` and ``_lastUpdated`` have no
  rows either: ``resource (type, id)`` and ``resource (type, last_updated)`` serve them. Rows that
  stores written before this keep under such names are left in place and never read.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from fhir_server.search.registry import SearchRegistry

SCHEMA = """
CREATE TABLE IF NOT EXISTS resource (
    pk INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    body BLOB NOT NULL,
    holders TEXT,
    UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS resource_type_updated ON resource (type, last_updated);
CREATE INDEX IF NOT EXISTS resource_state ON resource (pk, type, deleted, last_updated, holders);

CREATE TABLE IF NOT EXISTS history (
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (type, id, version)
);
CREATE INDEX IF NOT EXISTS history_updated ON history (last_updated, type, id, version);
CREATE INDEX IF NOT EXISTS history_type_updated ON history (type, last_updated, id, version);

CREATE TABLE IF NOT EXISTS param (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS holder_set (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);

CREATE TABLE IF NOT EXISTS idx_string (
    pk INTEGER NOT NULL, seq INTEGER NOT NULL, pkey INTEGER NOT NULL, grp INTEGER, norm TEXT NOT NULL,
    exact TEXT NOT NULL, h INTEGER, PRIMARY KEY (pk, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_string_norm_h ON idx_string (pkey, norm, exact, grp, pk, seq, h) WHERE grp IS NULL;

CREATE TABLE IF NOT EXISTS idx_token (
    pk INTEGER NOT NULL, seq INTEGER NOT NULL, pkey INTEGER NOT NULL, grp INTEGER, system TEXT, code TEXT,
    text TEXT, h INTEGER, PRIMARY KEY (pk, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_token_code_h ON idx_token (pkey, code, pk, seq, h);
CREATE INDEX IF NOT EXISTS idx_token_system_h ON idx_token (pkey, system, code, pk, seq, h);
CREATE INDEX IF NOT EXISTS idx_token_text_h ON idx_token (pkey, text, pk, seq, h) WHERE text IS NOT NULL;

CREATE TABLE IF NOT EXISTS idx_reference (
    pk INTEGER NOT NULL, seq INTEGER NOT NULL, pkey INTEGER NOT NULL, grp INTEGER, target_type TEXT,
    target_id TEXT, url TEXT, h INTEGER, PRIMARY KEY (pk, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_reference_target_h ON idx_reference (pkey, target_id, target_type, grp, url, pk, seq, h)
    WHERE grp IS NULL;
CREATE INDEX IF NOT EXISTS idx_reference_url_h ON idx_reference (pkey, url, grp, pk, seq, h)
    WHERE url IS NOT NULL AND grp IS NULL;

CREATE TABLE IF NOT EXISTS idx_date (
    pk INTEGER NOT NULL, seq INTEGER NOT NULL, pkey INTEGER NOT NULL, grp INTEGER, low INTEGER NOT NULL,
    high INTEGER NOT NULL, h INTEGER, PRIMARY KEY (pk, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_date_low_h ON idx_date (pkey, low, high, grp, pk, seq, h) WHERE grp IS NULL;
CREATE INDEX IF NOT EXISTS idx_date_high_h ON idx_date (pkey, high, low, grp, pk, seq, h) WHERE grp IS NULL;

CREATE TABLE IF NOT EXISTS idx_number (
    pk INTEGER NOT NULL, seq INTEGER NOT NULL, pkey INTEGER NOT NULL, grp INTEGER, value REAL NOT NULL,
    h INTEGER, PRIMARY KEY (pk, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_number_value_h ON idx_number (pkey, value, grp, pk, seq, h) WHERE grp IS NULL;

CREATE TABLE IF NOT EXISTS idx_quantity (
    pk INTEGER NOT NULL, seq INTEGER NOT NULL, pkey INTEGER NOT NULL, grp INTEGER, value REAL NOT NULL,
    system TEXT, code TEXT, unit TEXT, h INTEGER, PRIMARY KEY (pk, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_quantity_value_h ON idx_quantity (pkey, value, grp, pk, seq, h) WHERE grp IS NULL;
CREATE INDEX IF NOT EXISTS idx_quantity_code_h ON idx_quantity (pkey, code, value, grp, system, pk, seq, h) WHERE grp IS NULL;

CREATE TABLE IF NOT EXISTS idx_uri (
    pk INTEGER NOT NULL, seq INTEGER NOT NULL, pkey INTEGER NOT NULL, grp INTEGER, uri TEXT NOT NULL,
    h INTEGER, PRIMARY KEY (pk, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_uri_uri_h ON idx_uri (pkey, uri, grp, pk, seq, h) WHERE grp IS NULL;
"""

INDEX_TABLES = ("idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_quantity", "idx_uri")

_VALUE_COLUMNS = {
    "idx_string": "norm, exact",
    "idx_token": "system, code, text",
    "idx_reference": "target_type, target_id, url",
    "idx_date": "low, high",
    "idx_number": "value",
    "idx_quantity": "value, system, code, unit",
    "idx_uri": "uri",
}

UNKNOWN_PARAM = -1
"""The key used for a parameter name no resource has a value for yet: it matches no row."""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables, first converting a store written with text ``pkey`` columns (no ``seq``)
    or without holder keys in its index rows (no ``h``), then give UCUM quantities written before
    canonical indexing their canonical rows."""
    if {row[1] for row in conn.execute("PRAGMA table_info(resource)")} == _BEFORE_HOLDERS:
        _add_holders(conn)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(idx_token)")}
    if columns and "seq" not in columns:
        _convert_text_keys(conn)
    elif columns and "h" not in columns:
        _add_holder_keys(conn)
    conn.executescript(SCHEMA)
    if conn.execute("PRAGMA user_version").fetchone()[0] < CANONICAL_QUANTITIES_VERSION:
        _add_canonical_quantities(conn)


CANONICAL_QUANTITIES_VERSION = 1
"""``PRAGMA user_version`` from which every UCUM quantity has its ``<param>:canonical`` row."""


_BEFORE_HOLDERS = {"pk", "type", "id", "version", "last_updated", "deleted", "body"}


def union_params(resource_type: str) -> Mapping[str, tuple[str, ...]]:
    """The union parameters of ``resource_type``, each with its parts: their values are stored only
    under the parts' names."""
    return SearchRegistry.load().unions(resource_type)


def stored_names(name: str) -> tuple[str, ...]:
    """The names whose rows hold the values of index name ``name`` (``"<Type>.<param>"``, with a
    composite part ``$<i>`` or a derived suffix such as ``:canonical`` when it has one): ``name``
    itself, or for a union parameter the same name of each of its parts."""
    resource_type, _, rest = name.partition(".")
    unions = union_params(resource_type)
    if not unions:
        return (name,)
    cut = min((i for i in (rest.find("$"), rest.find(":")) if i >= 0), default=len(rest))
    parts = unions.get(rest[:cut])
    return (name,) if parts is None else tuple(f"{resource_type}.{part}{rest[cut:]}" for part in parts)


def holders_column(codes: Iterable[str]) -> str | None:
    """The ``holders`` value for a resource's record-holder codes."""
    codes = sorted(set(codes))
    return f"|{'|'.join(codes)}|" if codes else None


@contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` transaction around a store upgrade: committed when the block ends
    (also by ``return``), rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _add_holders(conn: sqlite3.Connection) -> None:
    """A store written before record holders: add the column (filled from the stored labels) and
    widen ``resource_state``, unless another process did so while this one waited for the lock."""
    from fhir_server.storage.base import HOLDER_SYSTEM

    with _write_transaction(conn):
        if "holders" not in {row[1] for row in conn.execute("PRAGMA table_info(resource)")}:
            conn.execute("ALTER TABLE resource ADD COLUMN holders TEXT")
            conn.execute("DROP INDEX IF EXISTS resource_state")
            if "seq" in {row[1] for row in conn.execute("PRAGMA table_info(idx_token)")}:  # the labels, if any
                conn.execute(
                    "UPDATE resource SET holders = (SELECT '|' || group_concat(t.code, '|') || '|' "
                    "FROM idx_token t JOIN param p ON p.id = t.pkey WHERE t.pk = resource.pk "
                    "AND p.name LIKE '%._security' AND t.system = ?) "
                    "WHERE pk IN (SELECT t.pk FROM idx_token t WHERE t.system = ?)", (HOLDER_SYSTEM, HOLDER_SYSTEM))


def _convert_text_keys(conn: sqlite3.Connection) -> None:
    """Rewrite the index tables of the first layout (rowid tables keyed by text ``pkey``) in place,
    unless another process (``serve --workers``) did so while this one waited for the write lock."""
    with _write_transaction(conn):
        if "seq" in {row[1] for row in conn.execute("PRAGMA table_info(idx_token)")}:
            return
        conn.execute("CREATE TABLE IF NOT EXISTS param (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
        for table in INDEX_TABLES:
            conn.execute(f"INSERT OR IGNORE INTO param (name) SELECT DISTINCT pkey FROM {table}")
            conn.execute(f"ALTER TABLE {table} RENAME TO {table}_text_keys")
            _drop_indexes(conn, f"{table}_text_keys")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        for table in INDEX_TABLES:
            values = _VALUE_COLUMNS[table]
            conn.execute(
                f"INSERT INTO {table} (pk, seq, pkey, grp, {values}) "
                f"SELECT o.pk, row_number() OVER (PARTITION BY o.pk ORDER BY o.rowid), p.id, o.grp, "
                f"{', '.join('o.' + c.strip() for c in values.split(','))} "
                f"FROM {table}_text_keys o JOIN param p ON p.name = o.pkey ORDER BY o.pk, o.rowid")
            conn.execute(f"DROP TABLE {table}_text_keys")
        _fill_holder_keys(conn)


def _add_holder_keys(conn: sqlite3.Connection) -> None:
    """A store written before index rows carried holder keys: add ``h`` to every index table, filled
    from ``resource.holders``, and drop the secondary indexes without it (``SCHEMA`` then builds the
    ``_h`` ones), unless another process did so while this one waited for the write lock."""
    with _write_transaction(conn):
        if "h" not in {row[1] for row in conn.execute("PRAGMA table_info(idx_token)")}:
            conn.execute("CREATE TABLE IF NOT EXISTS holder_set (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
            for table in INDEX_TABLES:
                _drop_indexes(conn, table)
                conn.execute(f"ALTER TABLE {table} ADD COLUMN h INTEGER")
            _fill_holder_keys(conn)


def _drop_indexes(conn: sqlite3.Connection, table: str) -> None:
    """Drop the secondary indexes of ``table`` (not those SQLite makes for its keys)."""
    for (index,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                 "AND sql IS NOT NULL", (table,)).fetchall():
        conn.execute(f"DROP INDEX {index}")


def _fill_holder_keys(conn: sqlite3.Connection) -> None:
    """Give every index row the key of its resource's holders (inside the caller's transaction)."""
    conn.execute("INSERT OR IGNORE INTO holder_set (name) SELECT DISTINCT holders FROM resource "
                 "WHERE holders IS NOT NULL")
    for table in INDEX_TABLES:
        conn.execute(f"UPDATE {table} SET h = hs.id FROM resource r JOIN holder_set hs ON hs.name = r.holders "
                     f"WHERE r.pk = {table}.pk")


def holder_keys(conn: sqlite3.Connection, holder: str) -> list[int]:
    """The ``holder_set`` keys of the sets that include ``holder`` (``Organization/x``), as ``conn``
    sees them: a few rows, one per distinct combination of holders in the store."""
    return [row[0] for row in conn.execute("SELECT id FROM holder_set WHERE instr(name, ?) > 0", (f"|{holder}|",))]


def _add_canonical_quantities(conn: sqlite3.Connection) -> None:
    """Index the UCUM quantities of a store written before canonical units (``search.ucum``) the way
    ``extract`` now does, once: ``user_version`` records it, checked again under the write lock in
    case another process did it meanwhile. Composite parts (``grp``) stay literal, as at write time."""
    from fhir_server.search.ucum import CANONICAL_SUFFIX, CANONICAL_SYSTEM, UCUM_SYSTEM, conversion

    with _write_transaction(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] < CANONICAL_QUANTITIES_VERSION:
            rows = conn.execute(
                "SELECT q.pk, p.name, q.value, q.code, (SELECT max(o.seq) FROM idx_quantity o WHERE o.pk = q.pk), q.h "
                "FROM idx_quantity q JOIN param p ON p.id = q.pkey "
                "WHERE q.grp IS NULL AND q.system = ? AND q.code IS NOT NULL ORDER BY q.pk, q.seq",
                (UCUM_SYSTEM,)).fetchall()
            added: dict[tuple[int, str, float, str], int] = {}
            last_seq: dict[int, int] = {}
            holders_of: dict[int, int | None] = {}  # pk: its index rows' h
            for pk, name, value, code, max_seq, h in rows:
                holders_of[pk] = h
                converted = conversion(code)
                if converted is None:
                    continue
                key = (pk, name + CANONICAL_SUFFIX, converted.apply(value), converted.unit)
                if key not in added:
                    added[key] = last_seq[pk] = last_seq.get(pk, max_seq) + 1
            for name in {key[1] for key in added}:
                conn.execute("INSERT OR IGNORE INTO param (name) VALUES (?)", (name,))
            keys = dict(conn.execute("SELECT name, id FROM param WHERE name LIKE ?", (f"%{CANONICAL_SUFFIX}",)))
            conn.executemany("INSERT INTO idx_quantity (pk, seq, pkey, grp, value, system, code, unit, h) "
                             "VALUES (?,?,?,NULL,?,?,?,NULL,?)",
                             [(pk, seq, keys[name], value, CANONICAL_SYSTEM, unit, holders_of[pk])
                              for (pk, name, value, unit), seq in added.items()])
            conn.execute(f"PRAGMA user_version = {CANONICAL_QUANTITIES_VERSION}")


class NameKeys:
    """The integer key of each name in ``table`` (``param``: the ``pkey`` of each
    ``"<ResourceType>.<param>"``; ``holder_set``: the ``h`` of each ``holders`` value), shared by all
    connections.

    Readers look names up (a name nobody has written has no key yet: ``UNKNOWN_PARAM``). The writer
    adds missing names inside its transaction; those keys become visible to readers only after
    ``committed()``, and ``discard()`` forgets them when the transaction (or a savepoint of it) rolls
    back, since the rollback may have removed their rows.
    """

    def __init__(self, table: str) -> None:
        self._table = table
        self._known: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def lookup(self, conn: sqlite3.Connection, names: Iterable[str], *, writing: bool = False) -> list[int]:
        """The keys of ``names`` as ``conn`` sees them; ``writing`` for the writer inside its
        transaction, whose uncommitted keys must not be shared."""
        keys = []
        for name in names:
            key = self._known.get(name)
            if key is None and writing:
                key = self._pending.get(name)
            if key is None:
                row = conn.execute(f"SELECT id FROM {self._table} WHERE name = ?", (name,)).fetchone()
                if row is None:
                    key = UNKNOWN_PARAM
                else:
                    key = row[0]
                    if not writing:
                        with self._lock:
                            self._known[name] = key
            keys.append(key)
        return keys

    def ensure(self, conn: sqlite3.Connection, name: str) -> int:
        """The key of ``name``, created if needed; only for the writer connection, in a transaction."""
        key = self._known.get(name)
        if key is None:
            key = self._pending.get(name)
            if key is None:
                conn.execute(f"INSERT OR IGNORE INTO {self._table} (name) VALUES (?)", (name,))
                key = conn.execute(f"SELECT id FROM {self._table} WHERE name = ?", (name,)).fetchone()[0]
                self._pending[name] = key
        return key

    def committed(self) -> None:
        with self._lock:
            self._known.update(self._pending)
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()
