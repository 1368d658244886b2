"""Fixtures for the identity subsystem: a movable clock and an identity store on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from consent.store import IdentityStore, open_identity_store
from fhir_server.settings import Settings


class FakeClock:
    """A clock tests move by hand; starts at a fixed, millisecond-aligned moment."""

    def __init__(self, start: datetime = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def identity_store(store_url: str) -> Iterator[IdentityStore]:
    store = open_identity_store(Settings(store_url=store_url))
    yield store
    store.close()
