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
    type_codes = sorted({r.interaction for r in routes if r.level in ("type", "instance") and r.operation is None})
    system_codes = sorted({code for r in routes if r.level == "system" and r.operation is None
                           for code in (r.interaction, *r.also) if code != "capabilities"})
    operations = _operations(routes)
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
        if operations.get(resource_type) or operations.get("*"):
            entry["operation"] = [{"name": name, "definition": url} for name, url in
                                  sorted({**operations.get("*", {}), **operations.get(resource_type, {})}.items())]
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
            "security": _security(base_url),
            "resource": resources,
            "interaction": [{"code": code} for code in system_codes],
        }],
    }


def _security(base_url: str) -> dict[str, Any]:
    """SMART on FHIR: bearer tokens from this server's token endpoint (client credentials with
    ``private_key_jwt`` for systems; password + OTP sign-in for people), described in full at
    ``/.well-known/smart-configuration``."""
    return {
        "cors": False,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 bearer tokens (SMART Backend Services for systems)"}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "token", "valueUri": f"{base_url}/auth/token"},
                {"url": "revoke", "valueUri": f"{base_url}/auth/revoke"},
            ],
        }],
        "description": (
            "Every interaction but GET /metadata needs `Authorization: Bearer <access token>`. Tokens come "
            f"from {base_url}/auth/token (SMART Backend Services client credentials) or from password + OTP "
            f"sign-in ({base_url}/auth/login); endpoints, scopes and keys are listed at "
            f"{base_url}/.well-known/smart-configuration. Patients read their own compartment; staff and "
            "facility systems read the records their facility holds and write records their facility then "
            "holds; other reads of patient data need the patient's consent. Reads of patient data by staff "
            "are recorded as AuditEvents the patient can read."
        ),
    }


def _operations(routes: list[Route]) -> dict[str, dict[str, str]]:
    """``{resource type or "*": {operation name: definition}}`` from the operation routes: the name
    follows ``$`` in the path; a path starting with ``{type}`` serves every type."""
    found: dict[str, dict[str, str]] = {}
    for route in routes:
        if route.operation is None:
            continue
        name = route.path.rsplit("$", 1)[1]
        first = route.path.split("/")[1]
        found.setdefault("*" if first == "{type}" else first, {})[name] = route.operation
    return found
