"""The identity endpoints' one error type, shaped like OAuth 2.0 errors (RFC 6749 section 5.2)."""

from __future__ import annotations

from typing import Any


class AuthError(Exception):
    """``status`` and the JSON body ``{"error", "error_description"}``; ``headers`` go with it."""

    def __init__(self, status: int, error: str, description: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def invalid_credentials() -> AuthError:
    """The one answer to an unknown ID, a wrong password, a locked account and an unusable account."""
    return AuthError(401, "invalid_grant", "the health ID, address or password is not correct")


def invalid_code() -> AuthError:
    """The one answer to an unknown, expired, used, ended or wrong one-time code."""
    return AuthError(401, "invalid_grant", "the code is not correct or no longer valid")


def bad_request(description: str) -> AuthError:
    return AuthError(400, "invalid_request", description)
