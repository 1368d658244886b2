"""Turning service results into HTTP responses: headers, Prefer handling, pretty printing."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

import orjson
from starlette.responses import Response

from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.service.bundles import etag, version_url
from fhir_server.storage.base import StoredResource

CONTENT_TYPE = "application/fhir+json; charset=utf-8"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  pretty: bool = False) -> Response:
    if isinstance(body, bytes):
        content = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2) if pretty else body
    else:
        content = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)
    return Response(content, status, headers, media_type=CONTENT_TYPE)


def error_response(error: FhirError, pretty: bool = False) -> Response:
    return json_response(error.outcome(), error.status, error.headers, pretty)


def version_headers(stored: StoredResource) -> dict[str, str]:
    return {"ETag": etag(stored), "Last-Modified": format_datetime(stored.last_updated, usegmt=True)}


def resource_response(stored: StoredResource, *, pretty: bool = False) -> Response:
    return json_response(stored.body, 200, version_headers(stored), pretty)


def write_response(stored: StoredResource, status: int, base_url: str, prefer_return: str, pretty: bool,
                   message: str) -> Response:
    """Create/update/patch: ``Location``, ``ETag``, ``Last-Modified``, and the body Prefer asks for."""
    headers = version_headers(stored)
    headers["Location"] = version_url(base_url, stored)
    if prefer_return == "minimal":
        return Response(None, status, headers)
    if prefer_return == "OperationOutcome":
        return json_response(operation_outcome([Issue("information", "informational", message)]), status,
                             headers, pretty)
    return json_response(stored.body, status, headers, pretty)


def outcome_response(message: str, status: int = 200, headers: dict[str, str] | None = None,
                     pretty: bool = False) -> Response:
    return json_response(operation_outcome([Issue("information", "informational", message)]), status,
                         headers, pretty)
