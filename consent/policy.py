"""The AccessPolicy the service applies to every storage call.

Built per request from the caller's credentials; no route does its own access checks. Until sign-in
exists (issue 5) the server runs open and every request carries the unrestricted policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.errors import FhirError


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    readable_types: frozenset[str] | None = None  # None: every type
    writable_types: frozenset[str] | None = None

    @classmethod
    def unrestricted(cls) -> AccessPolicy:
        return cls()

    def can_read(self, resource_type: str) -> bool:
        return self.readable_types is None or resource_type in self.readable_types

    def can_write(self, resource_type: str) -> bool:
        return self.writable_types is None or resource_type in self.writable_types

    def require_read(self, resource_type: str) -> None:
        if not self.can_read(resource_type):
            raise FhirError(403, "forbidden", f"reading {resource_type} resources is not permitted")

    def require_write(self, resource_type: str) -> None:
        if not self.can_write(resource_type):
            raise FhirError(403, "forbidden", f"writing {resource_type} resources is not permitted")
