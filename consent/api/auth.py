"""Sign-in, tokens, credentials and system-client endpoints, plus the JWKS and SMART configuration."""

from __future__ import annotations

import base64

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from consent.api.common import (
    NO_STORE,
    base,
    form_or_json,
    identity,
    json_body,
    json_response,
    principal,
    run,
    text,
)
from consent.clients import ASSERTION_ALGORITHMS
from consent.errors import AuthError
from consent.qr import qr_png
from consent.tokens import ROLE_SCOPES

router = APIRouter()

TOKEN_PATH = "/auth/token"
SYSTEM_SCOPES = ("system/*.read", "system/*.write", "system/*.*")


@router.post("/auth/login")
async def login(request: Request) -> Response:
    """Health ID or ABHA address + password → a one-time-code challenge."""
    data = await json_body(request)
    issued = await run(identity(request).signin.login, text(data, "id"), text(data, "password"))
    return json_response(issued.to_json(), headers=NO_STORE)


@router.post("/auth/otp/resend")
async def resend(request: Request) -> Response:
    data = await json_body(request)
    issued = await run(identity(request).signin.resend, text(data, "challenge_id"))
    return json_response(issued.to_json(), headers=NO_STORE)


@router.post("/auth/otp/verify")
async def verify(request: Request) -> Response:
    """The code from the SMS (or the authenticator app) → access token + refresh token."""
    data = await json_body(request)
    grant = await run(identity(request).signin.verify, text(data, "challenge_id"), text(data, "otp"))
    return json_response(grant.to_json(), headers=NO_STORE)


@router.post(TOKEN_PATH)
async def token(request: Request) -> Response:
    """OAuth2 token endpoint: ``refresh_token`` (people) and ``client_credentials`` with
    ``private_key_jwt`` (system clients)."""
    form = await form_or_json(request)
    ident = identity(request)
    grant_type = form.get("grant_type")
    if grant_type == "refresh_token":
        grant = await run(ident.signin.refresh, text(form, "refresh_token"))
    elif grant_type == "client_credentials":
        grant = await run(ident.clients.token, form, base(request) + TOKEN_PATH)
    else:
        raise AuthError(400, "unsupported_grant_type", "grant_type is refresh_token or client_credentials")
    return json_response(grant.to_json(), headers=NO_STORE)


@router.post("/auth/revoke")
async def revoke(request: Request) -> Response:
    """RFC 7009: ends the refresh token's session; answers 200 whether or not the token was known."""
    form = await form_or_json(request)
    await run(identity(request).signin.revoke, form.get("token", ""))
    return Response(status_code=200, headers=NO_STORE)


@router.post("/auth/password")
async def set_password(request: Request) -> Response:
    """Health ID or address + the set-password code sent to the mobile + the new password."""
    data = await json_body(request)
    await run(identity(request).credentials.set_password, text(data, "id"), text(data, "code"),
              text(data, "password"))
    return Response(status_code=204, headers=NO_STORE)


@router.post("/auth/totp/setup")
async def totp_setup(request: Request) -> Response:
    """Starts enrolling an authenticator app: the provisioning URI, also as a QR code to scan."""
    caller = _person(request)
    uri = await run(identity(request).credentials.totp_setup, caller)
    qr = "data:image/png;base64," + base64.b64encode(qr_png(uri)).decode()
    return json_response({"provisioning_uri": uri, "qr_code": qr}, headers=NO_STORE)


@router.post("/auth/totp/confirm")
async def totp_confirm(request: Request) -> Response:
    caller = _person(request)
    data = await json_body(request)
    await run(identity(request).credentials.totp_confirm, caller, text(data, "code"))
    return Response(status_code=204, headers=NO_STORE)


@router.delete("/auth/totp")
async def totp_remove(request: Request) -> Response:
    await run(identity(request).credentials.totp_remove, _person(request))
    return Response(status_code=204, headers=NO_STORE)


@router.post("/auth/clients")
async def register_client(request: Request) -> Response:
    """An administrator registers an EHR vendor's backend service with its public JWKS and scopes."""
    caller = principal(request)
    if caller.role != "admin":
        raise AuthError(403, "insufficient_scope", "registering system clients is for administrators")
    data = await json_body(request)
    scopes = data.get("scopes")
    client = await run(identity(request).clients.register, name=data.get("name", ""), jwks=data.get("jwks", {}),
                       scopes=scopes if isinstance(scopes, list) else [], facility_id=data.get("facility"),
                       client_id=data.get("client_id"))
    return json_response({"client_id": client.client_id, "name": client.name, "scopes": client.scopes,
                          "facility": client.facility_id, "token_endpoint": base(request) + TOKEN_PATH}, 201)


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> Response:
    keys = await run(identity(request).keys.jwks)
    return json_response(keys, headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> Response:
    root = base(request)
    person_scopes = sorted({s for scopes in ROLE_SCOPES.values() for s in scopes})
    return json_response({
        "issuer": identity(request).settings.issuer,
        "jwks_uri": f"{root}/.well-known/jwks.json",
        "token_endpoint": root + TOKEN_PATH,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "scopes_supported": [*SYSTEM_SCOPES, *person_scopes],
        "response_types_supported": [],
        "revocation_endpoint": f"{root}/auth/revoke",
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        "login_endpoint": f"{root}/auth/login",
        "otp_verify_endpoint": f"{root}/auth/otp/verify",
    })


def _person(request: Request) -> str:
    caller = principal(request)
    if caller.role == "system":
        raise AuthError(403, "insufficient_scope", "an authenticator app belongs to a person's account")
    return caller.subject
