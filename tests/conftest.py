"""Shared fixtures: an isolated server per test, on every storage backend.

``backend`` runs each HTTP conformance test against SQLite, against the MongoDB backend on an
in-process SecantusDB server, and against a real MongoDB when ``MONGODB_URI`` is set.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.base import HistoryQuery
from tests.consent.kit import mint_token

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _backends() -> list[str]:
    names = ["sqlite", "secantus"]
    if os.environ.get("MONGODB_URI"):
        names.append("mongodb")
    return names


@pytest.fixture(scope="session")
def secantus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    secantus = pytest.importorskip("secantus")
    server = secantus.SecantusDBServer(storage_path=str(tmp_path_factory.mktemp("secantus")))
    server.start()
    try:
        yield f"mongodb://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _mongo_url(base: str) -> str:
    base = base.split("?", 1)[0].rstrip("/")
    if base.count("/") > 2:  # the URI names a database: keep the host part only
        base = base.rsplit("/", 1)[0]
    return f"{base}/t{uuid.uuid4().hex[:12]}"


def _store_url(request: pytest.FixtureRequest, directory: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{directory}/fhir.db"
    if request.param == "secantus":
        base = request.getfixturevalue("secantus_server")
        return _mongo_url(base) + "?replicaSet=secantus&directConnection=true"
    uri = os.environ["MONGODB_URI"]
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return _mongo_url(uri) + (f"?{query}" if query else "")


@pytest.fixture(params=_backends())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _store_url(request, tmp_path)


@pytest.fixture(scope="session", params=_backends())
def shared_store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store per backend for the whole session, for read-only tests that share loaded data."""
    return _store_url(request, tmp_path_factory.mktemp("store"))


@pytest.fixture
def settings(store_url: str) -> Settings:
    return Settings(store_url=store_url)


TEST_FACILITY = "test-facility"
SYSTEM_SCOPES = ("system/*.read", "system/*.write")


def facility_token(app: FastAPI, facility: str = TEST_FACILITY) -> str:
    """A token of an EHR system registered for ``facility``: it writes records (which the server
    labels with that facility as record holder) and reads what its facility holds. The FHIR API
    tests run as such a client; the authorization tests use every other kind of caller too."""
    return mint_token(app, "system", subject=f"ehr-{facility}", facility_id=facility, scopes=SYSTEM_SCOPES)


def authorize(client: TestClient, facility: str = TEST_FACILITY) -> TestClient:
    """Makes ``client`` send a facility system's bearer token with every request."""
    client.headers["Authorization"] = f"Bearer {facility_token(client.app, facility)}"  # type: ignore[arg-type]
    return client


def stored_versions(client: TestClient, resource_type: str | None = None, id: str | None = None) -> int:
    """How many versions the store holds (of a type, of one resource; the audit trail left out): what
    writes left behind, counted by the storage itself, since no API caller may count other
    facilities' records."""
    client.app.state.authorization.audit.flush()  # type: ignore[attr-defined]
    storage = client.app.state.context.storage  # type: ignore[attr-defined]

    def count(of_type: str | None, of_id: str | None) -> int:
        return storage.history(HistoryQuery(of_type, of_id, None, None, 0, None)).total

    audit = count("AuditEvent", None) if resource_type is None else 0
    return count(resource_type, id) - audit


@pytest.fixture
def make_client(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings overrides)``: a server with a client that carries a facility
    system's token (``token=False``: no token)."""
    clients: list[TestClient] = []

    def make(token: bool = True, **overrides: object) -> TestClient:
        client = TestClient(create_app(replace(settings, **overrides)), base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        return authorize(client) if token else client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


class LiveServer:
    """A real uvicorn server on a loopback port, for concurrency and restart tests."""

    def __init__(self, settings: Settings) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings)
        self.headers = {"Authorization": f"Bearer {facility_token(app)}"}  # send with every request
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[Callable[[], LiveServer]]:
    servers: list[LiveServer] = []

    def start() -> LiveServer:
        server = LiveServer(settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
