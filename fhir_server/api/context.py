"""Everything one server instance holds: settings, storage and the services built on it.

Created by ``create_app`` and passed to every handler; there is no module-level state, so a test can
run as many isolated servers as it likes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from consent.policy import AccessPolicy
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.history import HistoryService
from fhir_server.service.resources import ResourceService
from fhir_server.service.search import SearchService
from fhir_server.settings import Settings
from fhir_server.storage.base import Storage

T = TypeVar("T")


@dataclass
class ServerContext:
    settings: Settings
    storage: Storage
    registry: SearchRegistry
    resources: ResourceService
    history: HistoryService
    search: SearchService
    resource_types: frozenset[str]
    capability_statement: Callable[[str], dict[str, Any]] = field(repr=False, default=lambda base: {})
    inline_reads: bool = False  # the store answers reads in microseconds: skip the thread hop

    def policy(self, request: Request) -> AccessPolicy:
        return AccessPolicy.unrestricted()

    async def run_read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.inline_reads:
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    async def run_write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(fn, *args, **kwargs)
