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
from fhir_server.api import negotiation as neg
from fhir_server.errors import not_found
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.documents import DocumentService
from fhir_server.service.everything import EverythingService
from fhir_server.service.history import HistoryService
from fhir_server.service.resources import ResourceService
from fhir_server.service.search import SearchService
from fhir_server.service.transactions import BundleService
from fhir_server.service.validate import ValidateService
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
    # batch/transaction bundles and the extended operations, built on the services above
    bundles: BundleService = field(init=False, repr=False)
    documents: DocumentService = field(init=False, repr=False)
    everything: EverythingService = field(init=False, repr=False)
    validation: ValidateService = field(init=False, repr=False)

    def resource_type(self, request: Request) -> str:
        """The ``{type}`` of the request's path; 404 for a type this server does not know."""
        resource_type = request.path_params["type"]
        if resource_type not in self.resource_types:
            raise not_found(f"unknown resource type {resource_type!r}")
        return resource_type

    def base_url(self, request: Request) -> str:
        return neg.base_url(request, self.settings.base_url)

    def policy(self, request: Request) -> AccessPolicy:
        """The AccessPolicy the endpoint built from the request's token (``app._endpoint``)."""
        return request.state.policy

    async def run_read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.inline_reads:
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    async def run_write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(fn, *args, **kwargs)
