"""Storage test fixtures shared with the HTTP-level tests: an in-process SecantusDB server (a
MongoDB-wire server, test-only) started once per session, handing out one fresh database per call."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(scope="session")
def secantus_uri_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """A callable returning the URI of a new, empty database on the shared SecantusDB server;
    skips the requesting test when SecantusDB is not installed."""
    secantus = pytest.importorskip("secantus")
    server = secantus.SecantusDBServer(storage_path=str(tmp_path_factory.mktemp("secantus")))
    server.start()

    def new_uri() -> str:
        return (f"mongodb://127.0.0.1:{server.port}/fhir_{uuid.uuid4().hex[:16]}"
                "?replicaSet=secantus&directConnection=true")

    yield new_uri
    server.stop()
