"""The app factory: one FastAPI application per Settings, with its own storage and services."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from consent.api import install as install_identity
from consent.clock import Clock, system_clock
from consent.audit import AuditTrail
from consent.authorization import Authorization
from consent.identity import build_identity
from fhir_server.api.capability import capability_statement
from fhir_server.api.context import ServerContext
from fhir_server.api.negotiation import check_accept, pretty
from fhir_server.api.responses import error_response
from fhir_server.api.routes import ROUTES, Route
from fhir_server.errors import FhirError
from fhir_server.resources.validation import has_model
from fhir_server.search import ucum
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.documents import DocumentService
from fhir_server.service.everything import EverythingService
from fhir_server.service.history import HistoryService
from fhir_server.service.resources import ResourceService
from fhir_server.service.search import SearchService
from fhir_server.service.subsetting import Subsetter
from fhir_server.service.transactions import BundleService
from fhir_server.service.validate import ValidateService
from fhir_server.settings import Settings
from fhir_server.storage.factory import open_storage

log = logging.getLogger("fhir_server")


class _TrailingSlash:
    """``/Patient/`` is ``/Patient``: FHIR clients append slashes freely and must not be redirected."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/") or "/"
                scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


def build_context(settings: Settings) -> ServerContext:
    storage = open_storage(settings)
    registry = SearchRegistry.load()
    extractor = IndexExtractor(registry)
    resource_types = frozenset(t for t in registry.resource_types() if has_model(t))
    context = ServerContext(
        settings=settings,
        storage=storage,
        registry=registry,
        resources=ResourceService(storage, registry, extractor),
        history=HistoryService(storage, settings.default_count, settings.max_count),
        search=SearchService(storage, registry, extractor, Subsetter.load(), default_count=settings.default_count,
                             max_count=settings.max_count, total_limit=settings.total_limit),
        resource_types=resource_types,
        inline_reads=getattr(storage, "inline_reads", False),
    )
    context.bundles = BundleService(context.resources, context.search, context.history, resource_types)
    context.documents = DocumentService(context.resources)
    context.everything = EverythingService(storage, context.resources, registry, settings.default_count,
                                           settings.max_count)
    context.validation = ValidateService(context.resources)
    context.capability_statement = partial(capability_statement, ROUTES, registry, resource_types)
    return context


def _endpoint(context: ServerContext, route: Route, authorization: Authorization):  # noqa: ANN202 - an endpoint
    """Every interaction but ``capabilities`` runs under the AccessPolicy of the caller's token; the
    patient data it discloses is audited when it ends."""
    handler = route.handler

    if route.interaction == "capabilities":
        async def public(request: Request) -> Response:
            check_accept(request)
            return await handler(context, request)

        public.__name__ = handler.__name__
        return public

    async def endpoint(request: Request) -> Response:
        check_accept(request)
        principal = authorization.principal(request.headers.get("authorization"))
        audit = authorization.request_audit(principal, request.method, request.scope["path"])
        request.state.policy = authorization.policy(principal, audit)
        try:
            return await handler(context, request)
        finally:
            if audit is not None:
                audit.finish()

    endpoint.__name__ = handler.__name__
    return endpoint


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    """``clock`` drives the identity subsystem (code and token lifetimes, lockouts): tests move it."""
    settings = settings or Settings()
    context = build_context(settings)
    identity = build_identity(settings, context.resources, context.search, clock)
    audit = AuditTrail(context.storage, settings)
    authorization = Authorization(identity, context.registry, context.search.extractor, audit, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ucum.prepare()
        # the long-lived heap (models, registries, compiled expressions) never becomes garbage:
        # keep the cyclic collector from walking it again on every full collection
        gc.collect()
        gc.freeze()
        # validating a resource allocates thousands of short-lived objects, few of them cyclic: with
        # the default 700 allocations between young collections, collecting took 2.2% of ingest CPU
        # (0.4% at 50,000; bench/ingest_bench.py's resources, in-process)
        gc.set_threshold(50_000, 20, 100)
        yield
        audit.close()
        identity.close()
        context.storage.close()

    app = FastAPI(title="fhir-server", openapi_url=None, docs_url=None, redoc_url=None,
                  redirect_slashes=False, lifespan=lifespan)
    app.state.context = context
    app.state.authorization = authorization
    for route in ROUTES:
        # plain Starlette routes: handlers take the Request and return a Response, so FastAPI's
        # dependency and response-model machinery would only add work on the hot path
        app.router.routes.append(StarletteRoute(route.path, _endpoint(context, route, authorization), methods=[route.method]))
    install_identity(app, identity)

    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, error: FhirError) -> Response:
        return error_response(error, pretty(request))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        code = {404: "not-found", 405: "not-supported"}.get(error.status_code, "processing")
        message = {404: f"no FHIR endpoint at {request.url.path}",
                   405: f"{request.method} is not supported on {request.url.path}"}.get(
            error.status_code, str(error.detail))
        return error_response(FhirError(error.status_code, code, message, headers=dict(error.headers or {})))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, getattr(request.scope.get("route"), "path", "?"))
        return error_response(FhirError(500, "exception", "internal server error"))

    app.add_middleware(_TrailingSlash)
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory fhir_server.app:app_from_env``."""
    return create_app(Settings.from_env())
