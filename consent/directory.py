"""Finding people by health ID, ABHA address or a scanned card, and assembling their health card.

Accounts we issued lead straight to their FHIR resource; a health ID we did not issue (a Patient
created through the FHIR API with an ABDM identifier) is found by an identifier search over both
generations of ABDM systems and both spellings of the number. All reads go through the FHIR
service layer.
"""

from __future__ import annotations

from typing import Any

import orjson

from consent.access import require_card_access, require_look_up
from consent.cards import CardHolder, render, verify_payload
from consent.health_id import AbhaAddress, HealthId, HealthIdError
from consent.keys import KeyRing
from consent.policy import AccessPolicy
from consent.store import Account, IdentityStore
from consent.tokens import Principal
from fhir_server.errors import FhirError, bad_request, not_found
from fhir_server.service.resources import ResourceService
from fhir_server.service.search import SearchService
from fhir_server.storage.base import StoredResource
from mappings.abdm import HEALTH_ID_SYSTEMS, PRACTITIONER_SYSTEMS
from mappings.abha_qr import PayloadError, read_payload


class HealthIdDirectory:
    def __init__(self, store: IdentityStore, resources: ResourceService, search: SearchService, keys: KeyRing) -> None:
        self._store = store
        self._resources = resources
        self._search = search
        self._keys = keys
        self._policy = AccessPolicy.unrestricted()  # callers were authorised by consent.access first

    # --- look-ups ----------------------------------------------------------------------------------

    def by_health_id(self, principal: Principal, text: str, base_url: str) -> StoredResource:
        require_look_up(principal)
        health_id = _parse_health_id(text)
        account = self._store.account_by(health_id=health_id.digits)
        if account is not None:
            return self._person(account)
        values = [f"{s}|{v}" for s in (*HEALTH_ID_SYSTEMS, *PRACTITIONER_SYSTEMS)
                  for v in (health_id.formatted, health_id.digits)]
        return self._search_one(values, base_url, f"no one with health ID {health_id.formatted} is known")

    def by_address(self, principal: Principal, text: str, base_url: str) -> StoredResource:
        require_look_up(principal)
        address = _parse_address(text)
        account = self._store.account_by(address=str(address))
        if account is not None:
            return self._person(account)
        return self._search_one([f"{s}|{address}" for s in HEALTH_ID_SYSTEMS], base_url,
                                f"no one with ABHA address {address} is known")

    def scan(self, principal: Principal, payload: Any, base_url: str) -> tuple[StoredResource, bool]:
        """The person a scanned card names, and whether the card carried our valid signature. A card
        with a signature that does not verify (altered, or forged) is refused."""
        require_look_up(principal)
        try:
            card = read_payload(payload)
        except PayloadError as error:
            raise bad_request(str(error)) from None
        signed = "sig" in payload
        if signed and not verify_payload(payload, self._keys.jwks()):
            raise FhirError(422, "security", "the card's signature does not verify: it was altered or not "
                                             "issued by this server")
        try:
            return self.by_health_id(principal, card.health_id, base_url), signed
        except FhirError as error:
            if error.status != 404 or not card.address:
                raise
        return self.by_address(principal, card.address, base_url), signed

    # --- cards -------------------------------------------------------------------------------------

    def card(self, principal: Principal, text: str, fmt: str) -> bytes:
        health_id = _parse_health_id(text)
        if principal.role == "patient":  # a patient's only card is their own: decide before looking
            account = self._store.account(principal.subject)
            if account is None or account.health_id != health_id.digits:
                require_card_access(principal, None)
        account = self._store.account_by(health_id=health_id.digits)
        require_card_access(principal, account)
        if account is None or account.status != "active":
            raise not_found(f"no health card for {health_id.formatted}: it was not issued here")
        person = orjson.loads(self._person(account).body)
        facility = None
        if account.facility_id:
            try:
                facility = orjson.loads(self._resources.read(self._policy, "Organization", account.facility_id).body)
            except FhirError:
                facility = None
        holder = CardHolder(health_id=health_id, name=_name(person), address=account.address,
                            gender=person.get("gender"), birth_date=person.get("birthDate"),
                            facility=(facility or {}).get("name"))
        return render(holder, self._keys, fmt)

    # --- helpers -----------------------------------------------------------------------------------

    def _person(self, account: Account) -> StoredResource:
        if account.patient_id:
            return self._resources.read(self._policy, "Patient", account.patient_id)
        if account.practitioner_id:
            return self._resources.read(self._policy, "Practitioner", account.practitioner_id)
        raise not_found("this health ID has no FHIR resource (an administrator account)")

    def _search_one(self, values: list[str], base_url: str, missing: str) -> StoredResource:
        found: list[tuple[str, str]] = []
        for resource_type in ("Patient", "Practitioner"):
            bundle = self._search.search(self._policy, base_url, resource_type,
                                         [("identifier", ",".join(values)), ("_count", "2")], strict=True)
            for entry in bundle.get("entry", []):
                if entry.get("search", {}).get("mode") == "match":
                    resource = orjson.loads(orjson.dumps(entry["resource"]))
                    found.append((resource["resourceType"], resource["id"]))
        if not found:
            raise not_found(missing)
        if len(found) > 1:
            raise FhirError(409, "multiple-matches", "several resources carry this identifier; "
                                                     "resolve the duplicates first")
        return self._resources.read(self._policy, *found[0])


def _parse_health_id(text: str) -> HealthId:
    try:
        return HealthId.parse(text, check_digit="warn")
    except HealthIdError as error:
        raise bad_request(str(error)) from None


def _parse_address(text: str) -> AbhaAddress:
    try:
        return AbhaAddress.parse(text)
    except HealthIdError as error:
        raise bad_request(str(error)) from None


def _name(resource: dict[str, Any]) -> str:
    for name in resource.get("name") or []:
        if name.get("text"):
            return name["text"]
        parts = [*name.get("given", []), name.get("family", "")]
        if any(parts):
            return " ".join(p for p in parts if p)
    return "-"
