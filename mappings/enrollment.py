"""Enrollment rows (the bulk CSV, or the enrollment API's JSON) → a validated ``Enrollee`` → FHIR
Patient, Practitioner and PractitionerRole resources with ABDM identifiers. Pure functions."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from consent.health_id import AbhaAddress, HealthId, HealthIdError
from mappings.abdm import (
    HEALTH_ID_SYSTEM,
    PRACTITIONER_SYSTEM,
    V2_IDENTIFIER_TYPE_SYSTEM,
    identifier,
    type_code,
)
from mappings.abha_qr import PayloadError, fhir_gender, parse_dob

ENROLLABLE_ROLES = ("patient", "practitioner", "facility-admin")
COLUMNS = ("name", "gender", "birth_date", "mobile", "role", "address", "health_id", "external_id")
_MOBILE = re.compile(r"^[6-9]\d{9}$")
_OWN_TYPES = {"HIN", "ABHA", "HPIN"}


class RowError(ValueError):
    """A row that cannot be enrolled; the message names the column and the rule."""


@dataclass(frozen=True, slots=True)
class Enrollee:
    role: str
    name: str
    gender: str  # FHIR code
    birth_date: str  # FHIR date
    mobile: str  # +91 and 10 digits
    address: str | None = None
    health_id: HealthId | None = None  # imported from another issuer; None: we issue one
    external_id: str | None = None  # the facility's own record number

    @property
    def is_staff(self) -> bool:
        return self.role != "patient"

    def enrollment_key(self, facility_id: str) -> str:
        """Finds this person again when the same row is enrolled twice at the same facility."""
        person = (f"ext|{self.external_id}" if self.external_id
                  else f"{' '.join(self.name.casefold().split())}|{self.birth_date}|{self.mobile}")
        return hashlib.sha256(f"{facility_id}|{self.role}|{person}".encode()).hexdigest()


def normalise_mobile(text: str) -> str:
    digits = re.sub(r"[\s\-()]", "", text or "")
    if digits.startswith("+91"):
        digits = digits[3:]
    elif digits.startswith("91") and len(digits) == 12 or digits.startswith("0") and len(digits) == 11:
        digits = digits[-10:]
    if not _MOBILE.match(digits):
        raise RowError("mobile: an Indian mobile number has 10 digits starting with 6 to 9")
    return f"+91{digits}"


def parse_row(row: Mapping[str, Any], *, today: date) -> tuple[Enrollee, list[str]]:
    """A validated enrollee and any warnings (an imported health ID failing its check digit)."""

    def value(key: str) -> str:
        raw = row.get(key)
        return str(raw).strip() if raw is not None else ""

    role = value("role").lower() or "patient"
    if role not in ENROLLABLE_ROLES:
        raise RowError(f"role: one of {', '.join(ENROLLABLE_ROLES)}")
    name = " ".join(value("name").split())
    if not name:
        raise RowError("name: required")
    if len(name) > 200:
        raise RowError("name: at most 200 characters")
    gender = fhir_gender(value("gender"))
    if gender is None:
        raise RowError("gender: male, female, other or unknown (or M, F, O, U)")
    if not value("birth_date"):
        raise RowError("birth_date: required (yyyy-MM-dd, d/M/yyyy or a year)")
    try:
        birth_date = parse_dob(value("birth_date"))
    except PayloadError as error:
        raise RowError(f"birth_date: {error}") from None
    if birth_date > today.isoformat() or int(birth_date[:4]) < today.year - 130:
        raise RowError("birth_date: not a plausible date of birth")
    if not value("mobile"):
        raise RowError("mobile: required (the set-password code is sent there)")
    mobile = normalise_mobile(value("mobile"))
    warnings: list[str] = []
    address = health_id = None
    if value("address"):
        try:
            address = str(AbhaAddress.parse(value("address"), legacy=False))
        except HealthIdError as error:
            raise RowError(f"address: {error}") from None
    if value("health_id"):
        try:
            health_id = HealthId.parse(value("health_id"), check_digit="warn")
        except HealthIdError as error:
            raise RowError(f"health_id: {error}") from None
        warnings += [f"health_id: {w}" for w in health_id.warnings]
    external_id = value("external_id") or None
    if external_id is not None and len(external_id) > 64:
        raise RowError("external_id: at most 64 characters")
    return Enrollee(role, name, gender, birth_date, mobile, address, health_id, external_id), warnings


def _person(enrollee: Enrollee, health_id: HealthId, facility_id: str) -> dict[str, Any]:
    if enrollee.is_staff:
        identifiers = [identifier("HPIN", PRACTITIONER_SYSTEM, health_id.formatted)]
    else:
        identifiers = [identifier("HIN", HEALTH_ID_SYSTEM, health_id.formatted)]
        if enrollee.address:
            identifiers.append(identifier("ABHA", HEALTH_ID_SYSTEM, enrollee.address))
    if enrollee.external_id:
        identifiers.append({"type": {"coding": [{"system": V2_IDENTIFIER_TYPE_SYSTEM, "code": "MR"}]},
                            "value": enrollee.external_id, "assigner": {"reference": f"Organization/{facility_id}"}})
    return {"identifier": identifiers, "active": True, "name": [{"text": enrollee.name}],
            "telecom": [{"system": "phone", "value": enrollee.mobile, "use": "mobile"}],
            "gender": enrollee.gender, "birthDate": enrollee.birth_date}


def patient_resource(enrollee: Enrollee, health_id: HealthId, facility_id: str) -> dict[str, Any]:
    return {"resourceType": "Patient", **_person(enrollee, health_id, facility_id),
            "managingOrganization": {"reference": f"Organization/{facility_id}"}}


def practitioner_resource(enrollee: Enrollee, health_id: HealthId, facility_id: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", **_person(enrollee, health_id, facility_id)}


def practitioner_role(practitioner_id: str, facility_id: str, role: str) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "PractitionerRole", "active": True,
                                "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
                                "organization": {"reference": f"Organization/{facility_id}"}}
    if role == "facility-admin":
        resource["code"] = [{"text": "facility administrator"}]
    return resource


def merge_person(existing: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """``desired``'s enrollment fields over an existing resource, keeping everything else it holds
    (other identifiers, addresses, contacts, extensions)."""
    merged = {k: v for k, v in existing.items() if k != "meta"}
    ours = {(i.get("system"), i.get("value")) for i in desired["identifier"]}
    assigners = [i["assigner"] for i in desired["identifier"] if "assigner" in i]
    kept = [i for i in existing.get("identifier") or []
            if (i.get("system"), i.get("value")) not in ours and type_code(i) not in _OWN_TYPES
            and i.get("assigner") not in assigners]
    merged["identifier"] = [*desired["identifier"], *kept]
    merged["name"] = desired["name"]
    mobile = desired["telecom"][0]
    merged["telecom"] = [mobile, *[t for t in existing.get("telecom") or [] if t.get("value") != mobile["value"]]]
    for key in ("gender", "birthDate", "active"):
        merged[key] = desired[key]
    if "managingOrganization" in desired and "managingOrganization" not in existing:
        merged["managingOrganization"] = desired["managingOrganization"]
    return merged


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = lambda r: {k: v for k, v in r.items() if k != "meta"}  # noqa: E731
    return strip(a) == strip(b)
