"""A StorageTransaction that holds writes back and hands them to the store together.

A transaction bundle writes hundreds of resources in one work; ``write_many`` stores them with a
few bulk statements instead of several statements each. Pending writes are flushed before every
read and search, so the work still sees its own writes, and when the work ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from fhir_server.search.plan import AnyCriterion
from fhir_server.storage.base import ResourceWrite, StorageTransaction, StoredResource


class BufferedTransaction:
    def __init__(self, tx: StorageTransaction) -> None:
        self._tx = tx
        self._pending: list[ResourceWrite] = []

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        self.flush()
        return self._tx.read(resource_type, id)

    def find(self, resource_type: str, criteria: Sequence[AnyCriterion], limit: int) -> list[StoredResource]:
        self.flush()
        return self._tx.find(resource_type, criteria, limit)

    def write(self, change: ResourceWrite) -> None:
        self._pending.append(change)

    def write_many(self, changes: Sequence[ResourceWrite]) -> None:
        self._pending.extend(changes)

    def claim(self, key: str) -> None:
        self._tx.claim(key)

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._tx.write_many(pending)
