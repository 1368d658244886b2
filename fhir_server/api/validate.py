"""``POST [base]/[type]/$validate`` and ``POST [base]/[type]/[id]/$validate``: HTTP only; the
operation is ``service.validate``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api import negotiation as neg
from fhir_server.api.context import ServerContext
from fhir_server.api.responses import json_response

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-validate"


async def validate_type(ctx: ServerContext, request: Request) -> Response:
    return await _validate(ctx, request, None)


async def validate_instance(ctx: ServerContext, request: Request) -> Response:
    return await _validate(ctx, request, request.path_params["id"])


async def _validate(ctx: ServerContext, request: Request, id: str | None) -> Response:
    resource_type = ctx.resource_type(request)
    _, body = await neg.json_body(request, ctx.settings.max_body_bytes)
    outcome = await ctx.run_write(ctx.validation.validate, ctx.policy(request), resource_type, id, body)
    return json_response(outcome, pretty=neg.pretty(request))
