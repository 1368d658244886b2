"""The NCD clinic the read-only search tests share, loaded once per backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from tests.api.ncd_clinic import Clinic, load
from tests.conftest import authorize


@pytest.fixture(scope="session")
def clinic(shared_store_url: str) -> Iterator[Clinic]:
    with TestClient(create_app(Settings(store_url=shared_store_url)), base_url="http://testserver") as client:
        yield load(authorize(client))
