"""What the identity routers share: reading bodies, the caller's Principal, responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from consent.errors import AuthError, bad_request
from consent.identity import Identity
from consent.tokens import InvalidTokenError, Principal
from fhir_server.api.negotiation import base_url
from fhir_server.errors import FhirError

T = TypeVar("T")
MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def identity(request: Request) -> Identity:
    return request.app.state.identity


def base(request: Request) -> str:
    return base_url(request, identity(request).settings.base_url)


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Service calls hash passwords and codes and touch the store: keep them off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise AuthError(413, "invalid_request", "the request body is too large")
    return body


async def json_body(request: Request) -> dict[str, Any]:
    body = await _body(request)
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("the body is a JSON object")
    return data


async def form_or_json(request: Request) -> dict[str, str]:
    """OAuth endpoints take ``application/x-www-form-urlencoded`` (RFC 6749); JSON is accepted too."""
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        return {k: v for k, v in (await json_body(request)).items() if isinstance(v, str)}
    body = await _body(request)
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise bad_request("the form is not valid UTF-8") from None


def text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} is required")
    return value


def principal(request: Request) -> Principal:
    """For the identity endpoints: a missing or bad token is an OAuth ``invalid_token`` 401."""
    try:
        return identity(request).principal_from_header(request.headers.get("authorization"))
    except InvalidTokenError as error:
        raise AuthError(401, "invalid_token", str(error), headers=_challenge(str(error))) from None


def fhir_principal(request: Request) -> Principal:
    """For the FHIR-shaped endpoints: the same check, answered with an OperationOutcome."""
    try:
        return identity(request).principal_from_header(request.headers.get("authorization"))
    except InvalidTokenError as error:
        raise FhirError(401, "login", str(error), headers=_challenge(str(error))) from None


def _challenge(description: str) -> dict[str, str]:
    safe = description.replace('"', "'")
    return {"WWW-Authenticate": f'Bearer realm="fhir-server", error="invalid_token", error_description="{safe}"'}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def auth_error_response(error: AuthError) -> Response:
    return json_response(error.body(), error.status, {**NO_STORE, **error.headers})
