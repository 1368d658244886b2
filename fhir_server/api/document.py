"""``GET [base]/Composition/[id]/$document[?persist=true]``: HTTP only; the operation is
``service.documents.DocumentService``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api import negotiation as neg
from fhir_server.api.context import ServerContext
from fhir_server.api.responses import json_response, version_headers
from fhir_server.errors import FhirError, bad_request
from fhir_server.service.bundles import version_url

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Composition-document"


async def document(ctx: ServerContext, request: Request) -> Response:
    persist = request.query_params.get("persist", "false")
    if persist not in ("true", "false"):
        raise bad_request(f"persist must be true or false, not {persist!r}", expression=("persist",))
    if "graph" in request.query_params:
        raise FhirError(400, "not-supported", "the graph parameter of $document is not supported")
    body, stored = await ctx.run_write(ctx.documents.document, ctx.policy(request), ctx.base_url(request),
                                       request.path_params["id"], persist == "true")
    headers = {}
    if stored is not None:
        headers = {**version_headers(stored.stored), "Location": version_url(ctx.base_url(request), stored.stored)}
    return json_response(body, 200, headers, neg.pretty(request))
