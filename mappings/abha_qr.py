"""The JSON in an ABHA health card's QR code (ABDM.md), read in every variant seen and written in one.

Readers accept the address under ``hid`` (card) or ``phr`` (app), the district under
``district_name`` or ``dist name``, the state under ``state name`` or ``state_name``, and a date of
birth as a year, ``d/M/yyyy`` or ``d-M-yyyy``. We write the card variant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

_DMY = re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$")
_YEAR = re.compile(r"^\d{4}$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_GENDER_CODES = {"M": "male", "F": "female", "O": "other", "T": "other", "U": "unknown"}
_FHIR_GENDER_CODES = {"male": "M", "female": "F", "other": "O", "unknown": "U"}


class PayloadError(ValueError):
    """The QR content is not an ABHA card payload; the message says what is missing."""


def parse_dob(text: str) -> str:
    """``1980``, ``5/9/1980``, ``5-9-1980`` (day first) or ``1980-09-05`` → a FHIR date."""
    value = (text or "").strip()
    if _YEAR.match(value):
        return value
    if match := _DMY.match(value):
        day, month, year = (int(g) for g in match.groups())
    elif match := _ISO.match(value):
        year, month, day = (int(g) for g in match.groups())
    else:
        raise PayloadError(f"date of birth {value!r} is not a year, d/M/yyyy, d-M-yyyy or yyyy-MM-dd")
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        raise PayloadError(f"date of birth {value!r} is not a real date") from None


def format_dob(fhir_date: str) -> str:
    """A FHIR date → the card's ``d/M/yyyy`` (a year alone stays a year)."""
    parts = fhir_date.split("-")
    if len(parts) == 3:
        return f"{int(parts[2])}/{int(parts[1])}/{parts[0]}"
    return parts[0]


def fhir_gender(code: str | None) -> str | None:
    if not code:
        return None
    value = code.strip()
    return _GENDER_CODES.get(value.upper(), value.lower() if value.lower() in _FHIR_GENDER_CODES else None)


def card_gender(fhir: str | None) -> str:
    return _FHIR_GENDER_CODES.get(fhir or "unknown", "U")


@dataclass(frozen=True, slots=True)
class CardPayload:
    """What a card's QR says about its holder, normalised."""

    health_id: str  # as printed: NN-NNNN-NNNN-NNNN (or however the issuer printed it)
    address: str | None = None
    name: str | None = None
    gender: str | None = None  # FHIR code
    birth_date: str | None = None  # FHIR date
    state: str | None = None
    district: str | None = None
    mobile: str | None = None  # masked on real cards
    postal_address: str | None = None


def read_payload(data: dict[str, Any]) -> CardPayload:
    if not isinstance(data, dict):
        raise PayloadError("the QR payload is a JSON object")
    health_id = data.get("hidn")
    if not isinstance(health_id, str) or not health_id.strip():
        raise PayloadError("the QR payload has no health ID number (hidn)")

    def text(*keys: str) -> str | None:
        for key in keys:
            value = data.get(key)
            if isinstance(value, (str, int)) and str(value).strip() not in ("", "-"):
                return str(value).strip()
        return None

    dob = text("dob")
    return CardPayload(health_id=health_id.strip(), address=text("hid", "phr"), name=text("name"),
                       gender=fhir_gender(text("gender")), birth_date=parse_dob(dob) if dob else None,
                       state=text("state name", "state_name"), district=text("district_name", "dist name"),
                       mobile=text("mobile"), postal_address=text("address"))


def write_payload(*, health_id: str, address: str | None, name: str, gender: str | None,
                  birth_date: str | None) -> dict[str, Any]:
    """The card variant; fields we do not hold (state and district LGD codes) are ``-`` as on real cards."""
    payload: dict[str, Any] = {"hidn": health_id, "hid": address or "", "name": name, "gender": card_gender(gender),
                               "statelgd": "-", "distlgd": "-", "dob": format_dob(birth_date) if birth_date else ""}
    return payload
