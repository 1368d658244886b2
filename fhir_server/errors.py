"""The one exception type of the server: an HTTP status plus the OperationOutcome to send.

Every layer raises ``FhirError``; the API layer turns it into a response in exactly one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # an IssueType code: invalid, structure, required, value, not-found, deleted, conflict, ...
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(Exception):
    """A request that cannot be served; ``status`` is the HTTP status, ``issues`` explain why."""

    def __init__(self, status: int, code: str, diagnostics: str, *, expression: Iterable[str] = (),
                 issues: Iterable[Issue] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.issues = list(issues) if issues is not None else [
            Issue("error", code, diagnostics, tuple(expression))
        ]
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def bad_request(diagnostics: str, *, code: str = "invalid", expression: Iterable[str] = ()) -> FhirError:
    return FhirError(400, code, diagnostics, expression=expression)


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, "not-found", diagnostics)


def precondition_failed(diagnostics: str) -> FhirError:
    return FhirError(412, "conflict", diagnostics)
