"""What a request asks for and carries: base URL, body, formats and preferences (http.html)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from fhir_server.errors import FhirError, bad_request

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
_JSON_TYPES = {"application/fhir+json", "application/json", "text/json", "json"}
_ANY_TYPES = {"*/*", "application/*", "*"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml", "xml"}


def media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def base_url(request: Request, configured: str | None) -> str:
    """The absolute base the client used (so paging links work through proxies), unless configured."""
    if configured:
        return configured.rstrip("/")
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip() or request.url.scheme
    host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host") or request.url.netloc
    prefix = headers.get("x-forwarded-prefix", "").rstrip("/") + request.scope.get("root_path", "").rstrip("/")
    return f"{scheme}://{host}{prefix}"


def check_accept(request: Request) -> None:
    """JSON only: an explicit ask for something else (XML, say) gets 406."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if media_type(fmt) not in _JSON_TYPES:
            raise FhirError(406, "not-supported", f"_format={fmt} is not supported; this server speaks JSON "
                                                  "(application/fhir+json)")
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    wanted = {media_type(part) for part in accept.split(",")}
    if wanted & (_JSON_TYPES | _ANY_TYPES):
        return
    raise FhirError(406, "not-supported", f"cannot answer in {accept}; this server speaks application/fhir+json")


def pretty(request: Request) -> bool:
    return request.query_params.get("_pretty") == "true"


@dataclass(frozen=True, slots=True)
class Preferences:
    return_: str = "representation"  # minimal | representation | OperationOutcome
    strict: bool = False


def preferences(request: Request) -> Preferences:
    return_, strict = "representation", False
    for header in request.headers.getlist("prefer"):
        for token in header.split(","):
            name, _, value = token.strip().partition("=")
            value = value.strip().strip('"')
            if name == "return" and value in ("minimal", "representation", "OperationOutcome"):
                return_ = value
            elif name == "handling":
                strict = value == "strict"
    return Preferences(return_, strict)


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
        raise FhirError(413, "too-costly", f"the request body exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirError(413, "too-costly", f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_content_type(request: Request, allow_patch: bool) -> str:
    content_type = media_type(request.headers.get("content-type"))
    if content_type in ("", "application/fhir+json", "application/json", "text/json"):
        return content_type or FHIR_JSON
    if allow_patch and content_type == JSON_PATCH:
        return content_type
    if content_type in _XML_TYPES:
        raise FhirError(415, "not-supported", "XML bodies are not supported; send application/fhir+json")
    raise FhirError(415, "not-supported", f"unsupported content type {content_type!r}; send "
                                          "application/fhir+json or application/json")


async def json_body(request: Request, limit: int, *, allow_patch: bool = False) -> tuple[str, Any]:
    """The parsed JSON body and its content type; 413, 415 or 400 for what cannot be one."""
    content_type = _check_content_type(request, allow_patch)
    raw = await read_body(request, limit)
    if not raw.strip():
        raise bad_request("the request has no body", code="required")
    try:
        return content_type, orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise FhirError(400, "structure", f"the body is not valid JSON: {error}") from None


async def resource_body(request: Request, limit: int) -> dict[str, Any]:
    _, body = await json_body(request, limit)
    if not isinstance(body, dict):
        raise FhirError(400, "structure", "the body must be a JSON object (a FHIR resource)")
    return body
