"""The SQLite index layout: integer parameter and holder-set keys that survive rollbacks, and stores
written with an earlier layout (text ``pkey`` columns, no holders, no holder keys in index rows)
converted when opened."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest

from fhir_server.search.index_values import ReferenceValue, StringValue, TokenValue
from fhir_server.search.plan import Criterion, Include, SearchPlan, StringMatch, TokenMatch
from fhir_server.storage.base import HOLDER_SYSTEM, HistoryQuery, ResourceWrite
from fhir_server.storage.sqlite import SqliteStorage
from fhir_server.storage.sqlite_schema import INDEX_TABLES

T0 = datetime(2024, 3, 1, tzinfo=UTC)

FIRST_LAYOUT = """
CREATE TABLE resource (pk INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL, deleted INTEGER NOT NULL, body BLOB NOT NULL, UNIQUE (type, id));
CREATE TABLE history (type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (type, id, version)) WITHOUT ROWID;
CREATE TABLE idx_string (pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, norm TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX idx_string_norm ON idx_string (pkey, norm);
CREATE TABLE idx_token (pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, system TEXT, code TEXT, text TEXT);
CREATE INDEX idx_token_code ON idx_token (pkey, code, system);
CREATE TABLE idx_reference (pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, target_type TEXT, target_id TEXT,
    url TEXT);
CREATE TABLE idx_date (pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, low INTEGER NOT NULL,
    high INTEGER NOT NULL);
CREATE TABLE idx_number (pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, value REAL NOT NULL);
CREATE TABLE idx_quantity (pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, value REAL NOT NULL, system TEXT,
    code TEXT, unit TEXT);
CREATE TABLE idx_uri (pk INTEGER NOT NULL, pkey TEXT NOT NULL, grp INTEGER, uri TEXT NOT NULL);
INSERT INTO resource VALUES (1, 'Patient', 'p1', 1, 0, 0, CAST('{"resourceType":"Patient","id":"p1"}' AS BLOB));
INSERT INTO resource VALUES (2, 'Patient', 'p2', 1, 0, 0, CAST('{"resourceType":"Patient","id":"p2"}' AS BLOB));
INSERT INTO history SELECT type, id, version, last_updated, deleted, body FROM resource;
INSERT INTO idx_string VALUES (1, 'Patient.family', NULL, 'sharma', 'Sharma'),
    (2, 'Patient.family', NULL, 'iyer', 'Iyer');
INSERT INTO idx_token VALUES (1, 'Patient.gender', NULL, NULL, 'female', NULL),
    (2, 'Patient.gender', NULL, NULL, 'male', NULL);
"""


def _ids(store: SqliteStorage, criterion: Criterion) -> list[str]:
    return [hit.stored.id for hit in store.search(SearchPlan(("Patient",), [criterion])).hits]


def test_a_store_with_text_parameter_keys_is_converted_when_opened(tmp_path) -> None:
    path = str(tmp_path / "first.db")
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_LAYOUT)
    store = SqliteStorage(path)
    try:
        assert _ids(store, Criterion("Patient", "family", "string", (StringMatch("shar"),))) == ["p1"]
        assert _ids(store, Criterion("Patient", "gender", "token", (TokenMatch(None, "male", False),))) == ["p2"]
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert {row[0] for row in conn.execute("SELECT name FROM sqlite_master")} >= {"param", "resource_state"}
        assert "seq" in {row[1] for row in conn.execute("PRAGMA table_info(idx_string)")}


def test_a_parameter_key_made_by_a_rolled_back_write_is_made_again(tmp_path) -> None:
    store = SqliteStorage(str(tmp_path / "keys.db"))

    def write_then_fail(tx) -> None:
        tx.write(ResourceWrite("Patient", "p1", 1, T0, False, b"{}", (StringValue("family", "iyer", "Iyer"),)))
        raise RuntimeError("rolled back")

    try:
        with pytest.raises(RuntimeError):
            store.run_in_transaction(write_then_fail)
        store.run_in_transaction(lambda tx: tx.write(ResourceWrite(
            "Patient", "p2", 1, T0, False, b"{}", (TokenValue("gender", None, "male"),
                                                  StringValue("family", "iyer", "Iyer")))))
        assert _ids(store, Criterion("Patient", "family", "string", (StringMatch("iyer"),))) == ["p2"]
        assert _ids(store, Criterion("Patient", "gender", "token", (TokenMatch(None, "male", False),))) == ["p2"]
    finally:
        store.close()


def test_a_store_from_before_record_holders_gets_them_when_opened(tmp_path) -> None:  # noqa: ANN001
    """The ``holders`` column is filled from the stored record-holder labels, so the records stay
    visible to the facilities that hold them."""
    import sqlite3

    from fastapi.testclient import TestClient

    from fhir_server.app import create_app
    from fhir_server.settings import Settings
    from tests.conftest import authorize

    url = f"sqlite:///{tmp_path}/fhir.db"
    with TestClient(create_app(Settings(store_url=url))) as client:
        patient_id = authorize(client, "phc-1").post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    conn = sqlite3.connect(tmp_path / "fhir.db")
    conn.execute("DROP INDEX resource_state")
    conn.execute("ALTER TABLE resource DROP COLUMN holders")
    conn.execute("CREATE INDEX resource_state ON resource (pk, type, deleted, last_updated)")
    conn.commit()
    conn.close()
    with TestClient(create_app(Settings(store_url=url))) as client:
        authorize(client, "phc-1")
        assert client.get(f"/Patient/{patient_id}").status_code == 200
        assert [e["resource"]["id"] for e in client.get("/Patient").json()["entry"]] == [patient_id]
        assert not authorize(client, "phc-2").get("/Patient").json().get("entry")
    conn = sqlite3.connect(tmp_path / "fhir.db")
    assert conn.execute("SELECT holders FROM resource WHERE type = 'Patient'").fetchall() == [("|Organization/phc-1|",)]
    assert "holders" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'resource_state'").fetchone()[0]


def test_a_holder_set_key_made_by_a_rolled_back_write_is_made_again(tmp_path) -> None:  # noqa: ANN001
    store = SqliteStorage(str(tmp_path / "holder-keys.db"))
    held = TokenValue("_security", HOLDER_SYSTEM, "Organization/c")
    guard = Criterion("Patient", "_security", "token", (TokenMatch(HOLDER_SYSTEM, "Organization/c", True),),
                      guard=True)

    def write_then_fail(tx) -> None:  # noqa: ANN001
        tx.write(ResourceWrite("Patient", "p1", 1, T0, False, b"{}", (held, StringValue("family", "iyer", "Iyer"))))
        raise RuntimeError("rolled back")

    try:
        with pytest.raises(RuntimeError):
            store.run_in_transaction(write_then_fail)
        store.run_in_transaction(lambda tx: tx.write(ResourceWrite(
            "Patient", "p2", 1, T0, False, b"{}", (held, StringValue("family", "iyer", "Iyer")))))
        family = Criterion("Patient", "family", "string", (StringMatch("iyer"),))
        assert [h.stored.id for h in store.search(SearchPlan(("Patient",), [family, guard])).hits] == ["p2"]
        assert store.count(SearchPlan(("Patient",), [family, guard])) == 1
    finally:
        store.close()


def test_a_store_without_holder_keys_in_its_index_rows_gets_them_when_opened(tmp_path) -> None:  # noqa: ANN001
    """Index rows written before they carried their resource's holder-set key get it, and the
    secondary indexes are rebuilt with it: each facility's searches still find exactly its records."""
    from fastapi.testclient import TestClient

    from fhir_server.app import create_app
    from fhir_server.settings import Settings
    from tests.conftest import authorize

    url = f"sqlite:///{tmp_path}/fhir.db"
    sharma = {"resourceType": "Patient", "name": [{"family": "Sharma"}]}
    with TestClient(create_app(Settings(store_url=url))) as client:
        ids = {f: authorize(client, f).post("/Patient", json=sharma).json()["id"] for f in ("phc-1", "phc-2")}
    conn = sqlite3.connect(tmp_path / "fhir.db")
    for table in INDEX_TABLES:
        for (index,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                     "AND sql IS NOT NULL", (table,)).fetchall():
            conn.execute(f"DROP INDEX {index}")
        conn.execute(f"ALTER TABLE {table} DROP COLUMN h")
    conn.execute("CREATE INDEX idx_string_norm ON idx_string (pkey, norm, exact, grp) WHERE grp IS NULL")
    conn.execute("DROP TABLE holder_set")
    conn.commit()
    conn.close()
    with TestClient(create_app(Settings(store_url=url))) as client:
        for facility, patient_id in ids.items():
            found = authorize(client, facility).get("/Patient", params={"family": "sharma"}).json()
            assert ([e["resource"]["id"] for e in found["entry"]], found["total"]) == ([patient_id], 1)
    conn = sqlite3.connect(tmp_path / "fhir.db")
    assert conn.execute("SELECT count(*) FROM idx_string i JOIN resource r ON r.pk = i.pk "
                        "WHERE r.type = 'Patient' AND i.h IS NULL").fetchone() == (0,)
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'idx_string'")}
    assert "idx_string_norm_h" in indexes and "idx_string_norm" not in indexes


def test_a_current_version_shares_its_body_with_the_resource_row(tmp_path) -> None:  # noqa: ANN001
    """History keeps a body of its own only for replaced versions; every version reads back whole,
    through updates, a deletion, a re-creation and a resource written twice in one transaction."""
    path = str(tmp_path / "shared.db")
    store = SqliteStorage(path)

    def body(version: int) -> bytes:
        return b'{"resourceType":"Patient","id":"p1","v":%d}' % version

    def write(version: int, deleted: bool = False):  # noqa: ANN202
        return ResourceWrite("Patient", "p1", version, T0, deleted, b"" if deleted else body(version))

    try:
        store.run_in_transaction(lambda tx: tx.write(write(1)))
        store.run_in_transaction(lambda tx: tx.write(write(2)))
        store.run_in_transaction(lambda tx: tx.write(write(3, deleted=True)))
        store.run_in_transaction(lambda tx: tx.write_many([write(4), write(5)]))
        with sqlite3.connect(path) as conn:
            stored = dict(conn.execute("SELECT version, length(body) FROM history WHERE id = 'p1'").fetchall())
        assert stored == {1: len(body(1)), 2: len(body(2)), 3: 0, 4: len(body(4)), 5: 0}
        for version in (1, 2, 4, 5):
            assert store.read_version("Patient", "p1", version).body == body(version)
        assert store.read_version("Patient", "p1", 3).deleted and store.read_version("Patient", "p1", 3).body == b""
        assert store.read("Patient", "p1").body == body(5)
        history = store.history(HistoryQuery(resource_type="Patient", id="p1", count=10))
        assert [(s.version, s.body) for s in history.entries] == [
            (5, body(5)), (4, body(4)), (3, b""), (2, body(2)), (1, body(1))]
    finally:
        store.close()


def test_current_versions_come_with_their_record_holders(tmp_path) -> None:  # noqa: ANN001
    """Reads, searches and includes of current versions carry the holders kept beside the body (what
    the access policy checks without parsing it); history versions leave them to the body."""
    store = SqliteStorage(str(tmp_path / "holders.db"))

    def holder(code: str) -> TokenValue:
        return TokenValue("_security", "urn:fhir-server:record-holder", code)

    patient = ResourceWrite("Patient", "p1", 1, T0, False, b'{"resourceType":"Patient","id":"p1"}',
                            [holder("Organization/a"), holder("Organization/b")])
    unlabelled = ResourceWrite("Patient", "p2", 1, T0, False, b'{"resourceType":"Patient","id":"p2"}')
    observation = ResourceWrite("Observation", "o1", 1, T0, False, b'{"resourceType":"Observation","id":"o1"}',
                                [holder("Organization/a"), ReferenceValue("subject", "Patient", "p1")])
    try:
        store.run_in_transaction(lambda tx: tx.write_many([patient, unlabelled, observation]))
        assert store.read("Patient", "p1").holders == ("Organization/a", "Organization/b")
        assert store.read("Patient", "p2").holders == ()
        assert store.read_version("Patient", "p1", 1).holders is None
        hits = store.search(SearchPlan(("Observation",), [])).hits
        assert [h.stored.holders for h in hits] == [("Organization/a",)]
        included = store.includes([hits[0].stored], [Include("Observation", "subject", "Patient")])
        assert [(s.id, s.holders) for s in included] == [("p1", ("Organization/a", "Organization/b"))]
    finally:
        store.close()


def test_committed_writes_reach_the_database_file_without_a_commit_copying_them(tmp_path) -> None:  # noqa: ANN001
    """A background checkpoint copies the WAL into the database file within seconds of a commit
    (SQLite's own, far below its ~80 MB threshold here, would not run); closing the store stops it."""
    path = tmp_path / "checkpointed.db"
    before = set(threading.enumerate())
    store = SqliteStorage(str(path))
    try:
        empty = path.stat().st_size
        writes = [ResourceWrite("Patient", f"p{n}", 1, T0, False, b'{"resourceType":"Patient","x":"%s"}' % (b"x" * 900))
                  for n in range(1000)]
        store.run_in_transaction(lambda tx: tx.write_many(writes))
        assert path.stat().st_size == empty  # committed to the WAL only
        deadline = time.monotonic() + 10
        while path.stat().st_size == empty and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > empty + 900_000
        started = [t for t in set(threading.enumerate()) - before if t.name == "sqlite-checkpoint"]
        assert len(started) == 1
    finally:
        store.close()
    assert not started[0].is_alive()
