"""The identity subsystem's HTTP routers and their error handling."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from consent.api import auth, healthid
from consent.api.common import auth_error_response
from consent.enrollment import EnrollmentError
from consent.errors import AuthError
from consent.identity import Identity
from fhir_server.api.responses import error_response
from fhir_server.errors import FhirError
from mappings.enrollment import RowError


def install(app: FastAPI, identity: Identity) -> None:
    """Mounts the routers on ``app`` and turns the identity errors into responses."""
    app.state.identity = identity
    before = list(app.router.routes)
    app.include_router(auth.router)
    app.include_router(healthid.router)
    # ahead of the FHIR route table, whose /{type}/{id} patterns would otherwise claim these paths
    app.router.routes[:] = [*app.router.routes[len(before):], *before]

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, error: AuthError) -> Response:
        return auth_error_response(error)

    @app.exception_handler(RowError)
    async def row_error(request: Request, error: RowError) -> Response:
        return error_response(FhirError(400, "invalid", str(error)))

    @app.exception_handler(EnrollmentError)
    async def enrollment_error(request: Request, error: EnrollmentError) -> Response:
        code = {404: "not-found", 409: "duplicate"}.get(error.status, "business-rule")
        return error_response(FhirError(error.status, code, str(error)))
