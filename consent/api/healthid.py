"""Health ID endpoints: enrollment, look-ups by health ID or address, health cards, card scanning.

Each needs a bearer token; who may do what is decided in ``consent.access`` (called by the services).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from consent.api.common import base, fhir_principal, identity, json_body, json_response, run
from consent.cards import FORMATS
from consent.health_id import HealthId, HealthIdError
from consent.tokens import Principal
from fhir_server.api.responses import resource_response
from fhir_server.errors import bad_request, not_found
from fhir_server.storage.base import StoredResource

router = APIRouter()


@router.post("/healthid/enrollments")
async def enroll(request: Request) -> Response:
    """Enrolls one person at a facility (the caller's, unless an administrator names one)."""
    caller = fhir_principal(request)
    data = await json_body(request)
    facility = data.get("facility") or caller.facility_id
    if not isinstance(facility, str) or not facility:
        raise bad_request("facility: the Organization id of the facility is required")
    result = await run(identity(request).enrollment.enroll_row, caller, data, facility)
    return json_response(result.to_json(), 201 if result.outcome == "created" else 200)


@router.post("/healthid/$scan")
async def scan(request: Request) -> Response:
    """The JSON read from a health card's QR code → the person's resource. ``X-Card-Signature`` says
    whether the card carried this server's valid signature (``valid``) or none (``absent``)."""
    caller = fhir_principal(request)
    payload = await json_body(request)
    stored, signed = await run(identity(request).directory.scan, caller, payload, base(request))
    _audit(request, caller, stored)
    response = resource_response(stored)
    response.headers["X-Card-Signature"] = "valid" if signed else "absent"
    return response


@router.get("/healthid/{ident}")
async def look_up(request: Request, ident: str) -> Response:
    """A health ID (any separators) or an ABHA address → the person's resource."""
    caller = fhir_principal(request)
    directory = identity(request).directory
    find = directory.by_health_id if HealthId.looks_like(ident) else directory.by_address
    stored = await run(find, caller, ident, base(request))
    _audit(request, caller, stored)
    return resource_response(stored)


def _audit(request: Request, caller: Principal, stored: StoredResource) -> None:
    """A look-up hands out a person's resource: staff look-ups of patients join the audit trail."""
    audit = request.app.state.authorization.request_audit(caller, request.method, request.url.path)
    if audit is not None and stored.resource_type == "Patient":
        audit.disclosed("read", f"{stored.resource_type}/{stored.id}", [stored])
        audit.finish()


@router.post("/healthid/{ident}/password-code")
async def reissue_password_code(request: Request, ident: str) -> Response:
    caller = fhir_principal(request)
    try:
        health_id = HealthId.parse(ident, check_digit="warn")
    except HealthIdError as error:
        raise bad_request(str(error)) from None
    await run(identity(request).enrollment.reissue_password_code, caller, health_id)
    return json_response({"setPasswordCode": "sent to the mobile number"}, 202)


@router.get("/healthid/{ident}/card.{fmt}")
async def card(request: Request, ident: str, fmt: str) -> Response:
    if fmt not in FORMATS:
        raise not_found(f"cards come as {', '.join('card.' + f for f in FORMATS)}")
    caller = fhir_principal(request)
    content = await run(identity(request).directory.card, caller, ident, fmt)
    headers = {"Cache-Control": "no-store", "Content-Disposition": f'inline; filename="health-card.{fmt}"'}
    return Response(content, 200, headers, media_type=FORMATS[fmt])
