"""SQLite tables: current versions, full history, and one index table per search-parameter type.

``history`` is an ordinary rowid table: its rows carry whole resource bodies, which a WITHOUT ROWID
table would keep in its key B-tree (SQLite advises against that for rows this large; measured,
appending versions cost twice the CPU and grew slower as the table grew).

Index rows point at ``resource.pk`` (an integer, so rows stay small) and carry ``pkey`` =
``"<ResourceType>.<param>"``. Composite values are stored as their parts in the ordinary tables
under ``"<ResourceType>.<param>$<part>"`` with a shared ``grp`` number, so one part-table per type
serves plain and composite searches alike.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS resource (
    pk INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS resource_type_updated ON resource (type, last_updated);

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

CREATE TABLE IF NOT EXISTS idx_string (
    pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, norm TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_string_norm ON idx_string (pkey, norm);
CREATE INDEX IF NOT EXISTS idx_string_exact ON idx_string (pkey, exact);
CREATE INDEX IF NOT EXISTS idx_string_pk ON idx_string (pk);

CREATE TABLE IF NOT EXISTS idx_token (
    pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, system TEXT, code TEXT, text TEXT);
CREATE INDEX IF NOT EXISTS idx_token_code ON idx_token (pkey, code, system);
CREATE INDEX IF NOT EXISTS idx_token_system ON idx_token (pkey, system, code);
CREATE INDEX IF NOT EXISTS idx_token_text ON idx_token (pkey, text);
CREATE INDEX IF NOT EXISTS idx_token_pk ON idx_token (pk);

CREATE TABLE IF NOT EXISTS idx_reference (
    pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, target_type TEXT, target_id TEXT, url TEXT);
CREATE INDEX IF NOT EXISTS idx_reference_target ON idx_reference (pkey, target_id, target_type);
CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (pkey, url);
CREATE INDEX IF NOT EXISTS idx_reference_pk ON idx_reference (pk);

CREATE TABLE IF NOT EXISTS idx_date (
    pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, low INTEGER NOT NULL, high INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_date_low ON idx_date (pkey, low, high);
CREATE INDEX IF NOT EXISTS idx_date_high ON idx_date (pkey, high);
CREATE INDEX IF NOT EXISTS idx_date_pk ON idx_date (pk);

CREATE TABLE IF NOT EXISTS idx_number (
    pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idx_number_value ON idx_number (pkey, value);
CREATE INDEX IF NOT EXISTS idx_number_pk ON idx_number (pk);

CREATE TABLE IF NOT EXISTS idx_quantity (
    pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, value REAL NOT NULL, system TEXT, code TEXT,
    unit TEXT);
CREATE INDEX IF NOT EXISTS idx_quantity_value ON idx_quantity (pkey, value);
CREATE INDEX IF NOT EXISTS idx_quantity_code ON idx_quantity (pkey, code, value);
CREATE INDEX IF NOT EXISTS idx_quantity_pk ON idx_quantity (pk);

CREATE TABLE IF NOT EXISTS idx_uri (
    pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, uri TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_uri_uri ON idx_uri (pkey, uri);
CREATE INDEX IF NOT EXISTS idx_uri_pk ON idx_uri (pk);
"""

INDEX_TABLES = ("idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_quantity", "idx_uri")
