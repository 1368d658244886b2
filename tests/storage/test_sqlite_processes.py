"""Several server processes (``serve --workers``) share one SQLite file: each has its own writer
connection, and they take turns holding the write lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from fhir_server.storage.base import ResourceWrite, StorageTransaction
from fhir_server.storage.sqlite import SqliteStorage


def test_two_stores_on_one_file_write_in_turns_without_losing_a_version(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    stores = [SqliteStorage(path), SqliteStorage(path)]
    errors: list[BaseException] = []

    def writer(store: SqliteStorage, name: str) -> None:
        for n in range(40):
            def work(tx: StorageTransaction, n: int = n) -> None:
                current = tx.read("Basic", "counter")
                version = current.version + 1 if current else 1
                tx.write_many([ResourceWrite("Basic", "counter", version, datetime.now(UTC), False, b"{}"),
                               ResourceWrite("Basic", f"{name}-{n}", 1, datetime.now(UTC), False, b"{}")])
            try:
                store.run_in_transaction(work)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

    threads = [threading.Thread(target=writer, args=(store, f"w{i}")) for i, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        counter = stores[0].read("Basic", "counter")
        assert counter is not None and counter.version == 80
        assert all(stores[1].read("Basic", f"w{i}-{n}") for i in range(2) for n in range(40))
    finally:
        for store in stores:
            store.close()
