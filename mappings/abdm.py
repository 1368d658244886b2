"""ABDM identifier systems and type codes (ABDM.md): two generations of systems are in use, so
readers accept both and writers emit the first."""

from __future__ import annotations

from typing import Any

HEALTH_ID_SYSTEM = "https://healthid.abdm.gov.in"
HEALTH_ID_SYSTEMS = (HEALTH_ID_SYSTEM, "https://healthid.ndhm.gov.in")
PRACTITIONER_SYSTEM = "https://doctor.abdm.gov.in"
PRACTITIONER_SYSTEMS = (PRACTITIONER_SYSTEM, "https://doctor.ndhm.gov.in")
FACILITY_SYSTEM = "https://facility.abdm.gov.in"
FACILITY_SYSTEMS = (FACILITY_SYSTEM, "https://facility.ndhm.gov.in")
IDENTIFIER_TYPE_SYSTEM = "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-identifier-type-code"
V2_IDENTIFIER_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"

_TYPE_DISPLAY = {"HIN": "Health ID number", "ABHA": "ABHA address", "HPIN": "Health professional ID",
                 "ADN": "Aadhaar number"}


def identifier(code: str, system: str, value: str) -> dict[str, Any]:
    """An identifier with an NRCeS type code (HIN, ABHA, HPIN, ADN)."""
    return {"type": {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": code, "display": _TYPE_DISPLAY[code]}]},
            "system": system, "value": value}


def type_code(ident: dict[str, Any]) -> str | None:
    for coding in (ident.get("type") or {}).get("coding") or []:
        if coding.get("system") == IDENTIFIER_TYPE_SYSTEM:
            return coding.get("code")
    return None
