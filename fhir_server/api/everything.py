"""``GET [base]/Patient/[id]/$everything``: HTTP only; the operation is ``service.everything``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api import negotiation as neg
from fhir_server.api.context import ServerContext
from fhir_server.api.responses import json_response

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"


async def everything(ctx: ServerContext, request: Request) -> Response:
    result = await ctx.run_read(ctx.everything.everything, ctx.policy(request), ctx.base_url(request),
                                request.path_params["id"], request.query_params.multi_items())
    return json_response(result, pretty=neg.pretty(request))
