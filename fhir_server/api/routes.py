"""The route table: every FHIR interaction is one row (method, path, handler, capability code).

Handlers only translate HTTP to service calls and service results to responses; FHIR rules live in
``fhir_server.service``. The CapabilityStatement is generated from this table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api import document, everything, validate
from fhir_server.api import negotiation as neg
from fhir_server.api.context import ServerContext
from fhir_server.api.responses import (
    json_response,
    outcome_response,
    resource_response,
    version_headers,
    write_response,
)
from fhir_server.errors import FhirError, not_found
from fhir_server.service.bundles import etag, not_modified
from fhir_server.service.resources import WriteResult
from fhir_server.storage.base import StoredResource

Handler = Callable[[ServerContext, Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    interaction: str  # CapabilityStatement interaction code
    level: str  # "system" | "type" | "instance"
    conditional: bool = False  # the handler also serves the conditional form of the interaction
    also: tuple[str, ...] = ()  # further interaction codes the same handler serves (batch beside transaction)
    operation: str | None = None  # an extended operation (interaction "operation"): its OperationDefinition


def _type(ctx: ServerContext, request: Request) -> str:
    return ctx.resource_type(request)


def _base(ctx: ServerContext, request: Request) -> str:
    return ctx.base_url(request)


def _params(request: Request) -> list[tuple[str, str]]:
    return request.query_params.multi_items()


def _written(ctx: ServerContext, request: Request, result: WriteResult, verb: str) -> Response:
    stored = result.stored
    status = 201 if result.created else 200
    message = f"{verb} {stored.resource_type}/{stored.id} (version {stored.version})"
    return write_response(stored, status, _base(ctx, request), neg.preferences(request).return_,
                          neg.pretty(request), message)


# --- handlers ------------------------------------------------------------------------------------

async def capabilities(ctx: ServerContext, request: Request) -> Response:
    return json_response(ctx.capability_statement(_base(ctx, request)), pretty=neg.pretty(request))


async def read(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    stored = await ctx.run_read(ctx.resources.read, ctx.policy(request), resource_type, request.path_params["id"])
    if _not_modified(request, stored):
        return Response(None, 304, {"ETag": etag(stored)})
    return _resource(ctx, request, stored)


def _resource(ctx: ServerContext, request: Request, stored: StoredResource) -> Response:
    """A read or vread response, reduced when the query asks for ``_summary`` or ``_elements``."""
    if request.scope["query_string"]:
        body = ctx.search.subset_read(stored, _params(request))
        if body is not stored.body:
            return json_response(body, 200, version_headers(stored), neg.pretty(request))
    return resource_response(stored, pretty=neg.pretty(request))


def _not_modified(request: Request, stored: StoredResource) -> bool:
    return not_modified(stored, request.headers.get("if-none-match"), request.headers.get("if-modified-since"))


async def vread(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    stored = await ctx.run_read(ctx.resources.vread, ctx.policy(request), resource_type, request.path_params["id"],
                                request.path_params["vid"])
    return _resource(ctx, request, stored)


async def create(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    body = await neg.resource_body(request, ctx.settings.max_body_bytes)
    condition = request.headers.get("if-none-exist")
    if condition is None and request.url.query:
        condition = _conditional_query(request)
    result = await ctx.run_write(ctx.resources.create, ctx.policy(request), resource_type, body, condition)
    return _written(ctx, request, result, "created" if result.changed else "found existing")


def _conditional_query(request: Request) -> str | None:
    """The query string minus format parameters, or None when nothing is left to match on."""
    kept = [(n, v) for n, v in request.query_params.multi_items() if n not in ("_format", "_pretty")]
    if not kept:
        return None
    return urlencode(kept)


async def update(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    body = await neg.resource_body(request, ctx.settings.max_body_bytes)
    result = await ctx.run_write(ctx.resources.update, ctx.policy(request), resource_type,
                                 request.path_params["id"], body, request.headers.get("if-match"))
    return _written(ctx, request, result, "updated")


async def conditional_update(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    query = _conditional_query(request)
    if query is None:
        raise FhirError(400, "invalid", "PUT on a type needs search criteria in the query (conditional update)")
    body = await neg.resource_body(request, ctx.settings.max_body_bytes)
    result = await ctx.run_write(ctx.resources.conditional_update, ctx.policy(request), resource_type, query, body,
                                 request.headers.get("if-match"))
    return _written(ctx, request, result, "updated")


async def patch(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    content_type, body = await neg.json_body(request, ctx.settings.max_body_bytes, allow_patch=True)
    result = await ctx.run_write(ctx.resources.patch, ctx.policy(request), resource_type, request.path_params["id"],
                                 content_type, body, request.headers.get("if-match"))
    return _written(ctx, request, result, "patched")


async def conditional_patch(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    query = _conditional_query(request)
    if query is None:
        raise FhirError(400, "invalid", "PATCH on a type needs search criteria in the query (conditional patch)")
    content_type, body = await neg.json_body(request, ctx.settings.max_body_bytes, allow_patch=True)
    result = await ctx.run_write(ctx.resources.conditional_patch, ctx.policy(request), resource_type, query,
                                 content_type, body, request.headers.get("if-match"))
    return _written(ctx, request, result, "patched")


def _deleted(request: Request, result: WriteResult) -> Response:
    stored = result.stored
    headers = {"ETag": etag(stored)}
    if not result.changed:
        return Response(None, 204, headers)
    message = f"deleted {stored.resource_type}/{stored.id} (version {stored.version} is the deletion)"
    return outcome_response(message, 200, headers, neg.pretty(request))


async def delete(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    result = await ctx.run_write(ctx.resources.delete, ctx.policy(request), resource_type, request.path_params["id"],
                                 request.headers.get("if-match"))
    return _deleted(request, result)


async def conditional_delete(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    query = _conditional_query(request)
    if query is None:
        raise FhirError(400, "invalid", "DELETE on a type needs search criteria in the query (conditional delete)")
    result = await ctx.run_write(ctx.resources.conditional_delete, ctx.policy(request), resource_type, query,
                                 request.headers.get("if-match"))
    return _deleted(request, result)


async def history_instance(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    result = await ctx.run_read(ctx.history.history, ctx.policy(request), _base(ctx, request), resource_type,
                                request.path_params["id"], _params(request))
    return json_response(result, pretty=neg.pretty(request))


async def history_type(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    result = await ctx.run_read(ctx.history.history, ctx.policy(request), _base(ctx, request), resource_type, None,
                                _params(request))
    return json_response(result, pretty=neg.pretty(request))


async def history_system(ctx: ServerContext, request: Request) -> Response:
    result = await ctx.run_read(ctx.history.history, ctx.policy(request), _base(ctx, request), None, None,
                                _params(request))
    return json_response(result, pretty=neg.pretty(request))


async def search_type(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    return await _search(ctx, request, resource_type, _params(request))


async def search_type_post(ctx: ServerContext, request: Request) -> Response:
    resource_type = _type(ctx, request)
    return await _search(ctx, request, resource_type, _params(request) + await _form(ctx, request))


async def search_compartment(ctx: ServerContext, request: Request) -> Response:
    """``GET /Patient/123/Observation?...``: a type search within one compartment."""
    compartment = request.path_params["compartment"]
    if compartment not in ctx.resource_types:
        raise not_found(f"unknown resource type {compartment!r}")
    return await _search(ctx, request, _type(ctx, request), _params(request),
                         compartment=(compartment, request.path_params["id"]))


async def search_system(ctx: ServerContext, request: Request) -> Response:
    return await _search(ctx, request, None, _params(request))


async def search_system_post(ctx: ServerContext, request: Request) -> Response:
    return await _search(ctx, request, None, _params(request) + await _form(ctx, request))


async def _form(ctx: ServerContext, request: Request) -> list[tuple[str, str]]:
    content_type = neg.media_type(request.headers.get("content-type"))
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise FhirError(415, "not-supported", "_search takes an application/x-www-form-urlencoded body")
    raw = await neg.read_body(request, ctx.settings.max_body_bytes)
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise FhirError(400, "structure", "the form body is not UTF-8") from None


async def _search(ctx: ServerContext, request: Request, resource_type: str | None,
                  params: list[tuple[str, str]], compartment: tuple[str, str] | None = None) -> Response:
    strict = neg.preferences(request).strict
    result = await ctx.run_read(ctx.search.search, ctx.policy(request), _base(ctx, request), resource_type, params,
                                strict=strict, compartment=compartment)
    return json_response(result, pretty=neg.pretty(request))


async def transaction(ctx: ServerContext, request: Request) -> Response:
    """``POST [base]`` with a Bundle of type transaction or batch (also ``POST [base]/``)."""
    body = await neg.resource_body(request, ctx.settings.max_body_bytes)
    result = await ctx.run_write(ctx.bundles.process, ctx.policy(request), _base(ctx, request), body,
                                 neg.preferences(request).return_)
    return json_response(result, pretty=neg.pretty(request))


ROUTES: tuple[Route, ...] = (
    Route("GET", "/metadata", capabilities, "capabilities", "system"),
    Route("POST", "/", transaction, "transaction", "system", also=("batch",)),
    Route("POST", "/{type}/$validate", validate.validate_type, "operation", "type", operation=validate.DEFINITION),
    Route("POST", "/{type}/{id}/$validate", validate.validate_instance, "operation", "instance",
          operation=validate.DEFINITION),
    Route("GET", "/Patient/{id}/$everything", everything.everything, "operation", "instance",
          operation=everything.DEFINITION),
    Route("GET", "/Composition/{id}/$document", document.document, "operation", "instance",
          operation=document.DEFINITION),
    Route("GET", "/_history", history_system, "history-system", "system"),
    Route("GET", "/", search_system, "search-system", "system"),
    Route("POST", "/_search", search_system_post, "search-system", "system"),
    Route("GET", "/{type}/_history", history_type, "history-type", "type"),
    Route("POST", "/{type}/_search", search_type_post, "search-type", "type"),
    Route("GET", "/{type}/{id}/_history/{vid}", vread, "vread", "instance"),
    Route("GET", "/{type}/{id}/_history", history_instance, "history-instance", "instance"),
    # after every other three-segment GET route (``_history`` above, operations such as
    # ``$everything``): Starlette takes the first route that matches
    Route("GET", "/{compartment}/{id}/{type}", search_compartment, "search-type", "type"),
    Route("GET", "/{type}/{id}", read, "read", "instance"),
    Route("PUT", "/{type}/{id}", update, "update", "instance"),
    Route("PATCH", "/{type}/{id}", patch, "patch", "instance"),
    Route("DELETE", "/{type}/{id}", delete, "delete", "instance"),
    Route("GET", "/{type}", search_type, "search-type", "type"),
    Route("POST", "/{type}", create, "create", "type", conditional=True),
    Route("PUT", "/{type}", conditional_update, "update", "type", conditional=True),
    Route("PATCH", "/{type}", conditional_patch, "patch", "type", conditional=True),
    Route("DELETE", "/{type}", conditional_delete, "delete", "type", conditional=True),
)
