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


def test_other_threads_yield_to_the_thread_holding_the_write_lock(tmp_path: Path) -> None:
    """While one thread of a process holds the write lock, ``yield_to_writes`` keeps the process's
    other threads back until it commits (or rolls back); the holder itself never waits there."""
    store = SqliteStorage(str(tmp_path / "yield.db"))
    inside, release = threading.Event(), threading.Event()

    def work(tx: StorageTransaction, fail: bool) -> None:
        store.yield_to_writes()  # the lock holder's own thread: returns at once
        inside.set()
        release.wait(10)
        tx.write(ResourceWrite("Basic", "kept" if not fail else "dropped", 1, datetime.now(UTC), False, b"{}"))
        if fail:
            raise ValueError("rolled back")

    def attempt(fail: bool) -> None:
        try:
            store.run_in_transaction(lambda tx: work(tx, fail))
        except ValueError:
            pass

    try:
        for fail in (False, True):
            inside.clear()
            release.clear()
            holder = threading.Thread(target=attempt, args=(fail,))
            holder.start()
            assert inside.wait(5)
            yielded = threading.Event()
            other = threading.Thread(target=lambda: (store.yield_to_writes(), yielded.set()))
            other.start()
            assert not yielded.wait(0.3)  # held back while the transaction is open
            release.set()
            assert yielded.wait(5)
            holder.join(5)
            other.join(5)
        store.yield_to_writes()  # nobody writing: returns at once
        assert store.read("Basic", "kept") is not None
        assert store.read("Basic", "dropped") is None
    finally:
        release.set()
        store.close()
