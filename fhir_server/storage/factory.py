"""Opens the storage backend a store URL names."""

from __future__ import annotations

from urllib.parse import urlsplit

from fhir_server.settings import Settings
from fhir_server.storage.base import Storage


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///path/file.db`` URL names (an in-memory store is refused)."""
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):]
    if path in ("", ":memory:"):
        raise ValueError("the SQLite store needs a file: sqlite:///path/file.db")
    return path


def open_storage(settings: Settings) -> Storage:
    url = settings.store_url
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from fhir_server.storage.sqlite import SqliteStorage

        return SqliteStorage(sqlite_path(url))
    if scheme in ("mongodb", "mongodb+srv"):
        from fhir_server.storage.mongo import MongoStorage

        return MongoStorage(url)
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use sqlite:///path/file.db or mongodb://...")
