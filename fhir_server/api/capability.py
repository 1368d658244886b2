"""The CapabilityStatement, generated from the route table and the search registry, so it claims
exactly what the server does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_server import __version__
from fhir_server.api.routes import Route
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.stamping import format_instant, now_ms


def capability_statement(routes: Iterable[Route], registry: SearchRegistry, resource_types: Iterable[str],
                         base_url: str) -> dict[str, Any]:
    routes = list(routes)
    type_codes = sorted({r.interaction for r in routes if r.level in ("type", "instance")})
    system_codes = sorted({r.interaction for r in routes if r.level == "system" and r.interaction != "capabilities"})
    conditional = {r.interaction for r in routes if r.conditional}
    searchable = "search-type" in type_codes
    resources = []
    for resource_type in sorted(resource_types):
        entry: dict[str, Any] = {
            "type": resource_type,
            "interaction": [{"code": code} for code in type_codes],
            "versioning": "versioned-update",
            "readHistory": "vread" in type_codes,
            "updateCreate": "update" in type_codes,
            "conditionalCreate": "create" in conditional,
            "conditionalRead": "full-support",
            "conditionalUpdate": "update" in conditional,
            "conditionalDelete": "single" if "delete" in conditional else "not-supported",
        }
        if searchable:
            entry["searchParam"] = [
                {"name": p.code, "type": p.type, "definition": p.url}
                if getattr(p, "url", None) else {"name": p.code, "type": p.type}
                for p in sorted(registry.for_type(resource_type).values(), key=lambda p: p.code)
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now_ms()),
        "publisher": "fhir-server",
        "kind": "instance",
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {"description": "FHIR R4 interoperability server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": code} for code in system_codes],
        }],
    }
