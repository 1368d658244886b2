"""Getting tokens in tests, for every role: the hand-over to the FHIR API's authorization tests.

``mint_token(app, role, ...)`` signs a real access token with the app's own key (fast: no
sign-in); ``IdentityKit`` walks the real flows (enrollment, set-password code from the outbox,
password → OTP from the outbox → token).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from consent.identity import Identity
from consent.store import Account
from consent.tokens import ROLE_SCOPES

PASSWORD = "monsoon-tea-at-4"
_CODE = re.compile(r"\b(\d{6,8})\b")


def identity_of(app: FastAPI) -> Identity:
    return app.state.identity


def mint_token(app: FastAPI, role: str, *, subject: str = "test-subject", facility_id: str | None = None,
               patient_id: str | None = None, practitioner_id: str | None = None,
               scopes: tuple[str, ...] | None = None, client_id: str | None = None) -> str:
    """An access token the app accepts, for any role (``system`` included), without an account."""
    issuer = identity_of(app).issuer
    token, _ = issuer.issue(subject=subject, role=role,
                            scopes=scopes if scopes is not None else ROLE_SCOPES.get(role, ()),
                            facility_id=facility_id, patient_id=patient_id, practitioner_id=practitioner_id,
                            client_id=client_id if client_id or role != "system" else subject)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class IdentityKit:
    """Drives the identity endpoints of one test client the way people would."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.identity = identity_of(client.app)  # type: ignore[arg-type]
        self._mobiles = iter(range(9_000_000_001, 9_999_999_999, 7919))

    def mobile(self) -> str:
        return str(next(self._mobiles))

    def last_code(self, mobile: str) -> str:
        """The code in the newest outbox message to ``mobile`` (any of +91 / 10-digit forms)."""
        digits = mobile[-10:]
        messages = self.identity.store.outbox_messages(f"+91{digits}")
        assert messages, "no message was sent to this mobile"
        codes = _CODE.findall(messages[-1].body.split("code", 1)[1])
        return codes[0]

    def organization(self, name: str = "PHC Samastipur") -> str:
        response = self.client.post("/Organization", json={"resourceType": "Organization", "name": name,
                                                           "active": True},
                                    headers=bearer(mint_token(self.client.app, "admin")))  # type: ignore[arg-type]
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def admin(self, password: str = PASSWORD) -> tuple[Account, str]:
        """An administrator account (as ``create-admin`` makes one), signed in: (account, token)."""
        mobile = self.mobile()
        account = self.identity.enrollment.create_admin(mobile, password)
        return account, self.sign_in(account.health_id, password, mobile)["access_token"]

    def enroll(self, token: str, facility: str, *, role: str = "patient", name: str = "Asha Sharma",
               gender: str = "female", birth_date: str = "1980-09-05", mobile: str | None = None,
               **extra: Any) -> dict[str, Any]:
        body = {"facility": facility, "role": role, "name": name, "gender": gender, "birth_date": birth_date,
                "mobile": mobile or self.mobile(), **extra}
        response = self.client.post("/healthid/enrollments", json=body, headers=bearer(token))
        assert response.status_code in (200, 201), response.text
        return {**response.json(), "mobile": body["mobile"]}

    def set_password(self, enrolled: dict[str, Any], password: str = PASSWORD) -> None:
        code = self.last_code(enrolled["mobile"])
        response = self.client.post("/auth/password", json={"id": enrolled["healthId"], "code": code,
                                                            "password": password})
        assert response.status_code == 204, response.text

    def sign_in(self, id: str, password: str, mobile: str) -> dict[str, Any]:
        """Password → OTP from the outbox → tokens (the JSON of /auth/otp/verify)."""
        login = self.client.post("/auth/login", json={"id": id, "password": password})
        assert login.status_code == 200, login.text
        verify = self.client.post("/auth/otp/verify", json={"challenge_id": login.json()["challenge_id"],
                                                            "otp": self.last_code(mobile)})
        assert verify.status_code == 200, verify.text
        return verify.json()

    def holder(self, token: str, facility: str, role: str = "patient", **fields: Any) -> tuple[dict[str, Any], str]:
        """Enrolls someone and mints their token directly (no password or OTP work): (enrollment, token)."""
        enrolled = self.enroll(token, facility, role=role, **fields)
        kind, _, id = enrolled["resource"].partition("/")
        links = {"patient_id": id} if kind == "Patient" else {"practitioner_id": id, "facility_id": facility}
        return enrolled, mint_token(self.client.app, role, subject=enrolled["account"], **links)  # type: ignore[arg-type]

    def person(self, token: str, facility: str, role: str = "patient", **fields: Any) -> tuple[dict[str, Any], str]:
        """Enrolls someone, lets them set their password and sign in: (enrollment JSON, their token)."""
        enrolled = self.enroll(token, facility, role=role, **fields)
        self.set_password(enrolled)
        return enrolled, self.sign_in(enrolled["healthId"], PASSWORD, enrolled["mobile"])["access_token"]
