"""Fixtures for the identity subsystem: a movable clock and an identity store on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consent.store import IdentityStore, open_identity_store
from fhir_server.settings import Settings
from tests.consent.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def identity_store(store_url: str) -> Iterator[IdentityStore]:
    store = open_identity_store(Settings(store_url=store_url))
    yield store
    store.close()
