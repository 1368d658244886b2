"""Fixtures for the identity subsystem: a movable clock and an identity store on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from consent.store import IdentityStore, open_identity_store
from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.consent.fakes import FakeClock
from tests.consent.kit import IdentityKit


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "all_backends: an identity HTTP test that also runs on MongoDB")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The identity store's contract runs on every backend (test_identity_store); of the HTTP-level
    identity tests only those marked ``all_backends`` repeat on MongoDB, the rest run on SQLite."""
    kept, dropped = [], []
    for item in items:
        backend = getattr(item, "callspec", None) and item.callspec.params.get("store_url")
        in_http_tests = item.path.parent.name == "consent" and item.path.name.endswith("_http.py")
        if in_http_tests and backend not in (None, "sqlite") and item.get_closest_marker("all_backends") is None:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def identity_store(store_url: str) -> Iterator[IdentityStore]:
    store = open_identity_store(Settings(store_url=store_url))
    yield store
    store.close()


@pytest.fixture
def identity_client(settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    """A server on every backend, driven by the fake clock, with cheap password hashing and no
    failure floor (the timing test sets its own)."""
    app = create_app(replace(settings, password_memory_kib=8 * 1024, failure_floor_ms=0), clock=clock)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def kit(identity_client: TestClient) -> IdentityKit:
    return IdentityKit(identity_client)
