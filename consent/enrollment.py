"""Enrolling people at a facility: the FHIR resource (through the FHIR service layer), the sign-in
account with a new health ID, and a set-password code sent to their mobile.

Idempotent: a person already enrolled at the facility (same external id, or same name, birth date
and mobile) is found again and their resource updated only if something changed. The account is
written first, as ``pending``, so the unique indexes reserve its health ID and address (and the
per-mobile limit counts it) before any FHIR resource exists; a failure after that removes it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from consent.access import require_enroller
from consent.clock import Clock
from consent.credentials import CredentialService
from consent.health_id import HealthId
from consent.passwords import Passwords, check_password_policy
from consent.policy import AccessPolicy
from consent.store import Account, DuplicateError, IdentityStore, MobileLimitError, new_id
from consent.tokens import Principal
from fhir_server.errors import FhirError
from fhir_server.service.resources import ResourceService
from mappings.abdm import HEALTH_ID_SYSTEM, PRACTITIONER_SYSTEM
from mappings.enrollment import (
    Enrollee,
    RowError,
    merge_person,
    normalise_mobile,
    parse_row,
    patient_resource,
    practitioner_resource,
    practitioner_role,
    same_content,
)

log = logging.getLogger("consent.enrollment")

MAX_IDS_PER_MOBILE = 6
_ISSUE_ATTEMPTS = 5


class EnrollmentError(ValueError):
    """The person cannot be enrolled; ``status`` is the HTTP status, the message says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class EnrollmentResult:
    outcome: str  # created | updated | unchanged
    account_id: str
    health_id: HealthId
    role: str
    resource: str  # "Patient/<id>" or "Practitioner/<id>"
    address: str | None = None
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"outcome": self.outcome, "account": self.account_id,
                                "healthId": self.health_id.formatted, "role": self.role, "resource": self.resource}
        if self.address:
            body["address"] = self.address
        if self.warnings:
            body["warnings"] = list(self.warnings)
        if self.outcome == "created":
            body["setPasswordCode"] = "sent to the mobile number"
        return body


class EnrollmentService:
    def __init__(self, store: IdentityStore, resources: ResourceService, credentials: CredentialService,
                 passwords: Passwords, clock: Clock) -> None:
        self._store = store
        self._passwords = passwords
        self._resources = resources
        self._credentials = credentials
        self._clock = clock
        self._policy = AccessPolicy.unrestricted()  # the enroller was authorised by require_enroller

    def enroll_row(self, principal: Principal, row: Mapping[str, Any], facility_id: str) -> EnrollmentResult:
        """Validates one row (CSV or JSON), then enrolls; ``RowError`` names the column at fault."""
        enrollee, warnings = parse_row(row, today=self._clock().date())
        return self.enroll(principal, enrollee, facility_id, warnings=tuple(warnings))

    def enroll(self, principal: Principal, enrollee: Enrollee, facility_id: str,
               warnings: tuple[str, ...] = ()) -> EnrollmentResult:
        require_enroller(principal, facility_id, enrollee.role)
        self._require_facility(facility_id)
        key = enrollee.enrollment_key(facility_id)
        existing = self._store.account_by(enrollment_key=key)
        if existing is None and enrollee.health_id is not None:
            existing = self._store.account_by(health_id=enrollee.health_id.digits)
            if existing is not None and (existing.facility_id != facility_id or existing.role != enrollee.role):
                raise EnrollmentError("this health ID is already enrolled (at another facility or in another role)",
                                      409)
        if existing is not None:
            return self._re_enroll(existing, enrollee, facility_id, warnings)
        return self._enroll_new(enrollee, facility_id, key, warnings)

    def _enroll_new(self, enrollee: Enrollee, facility_id: str, key: str,
                    warnings: tuple[str, ...]) -> EnrollmentResult:
        account = self._reserve(enrollee, facility_id, key)
        if account is None:  # the same person was enrolled concurrently: treat as a re-run
            existing = self._store.account_by(enrollment_key=key)
            if existing is None:
                raise EnrollmentError("enrollment conflicted with another one; try again", 409)
            return self._re_enroll(existing, enrollee, facility_id, warnings)
        health_id = HealthId(account.health_id)
        try:
            reference = self._write_resources(enrollee, health_id, facility_id, None)
            links = {"patient_id": reference.split("/")[1]} if reference.startswith("Patient/") else {
                "practitioner_id": reference.split("/")[1]}
            self._store.update_account(account.id, status="active", **links)
            account = self._store.account(account.id) or account
            self._credentials.issue_password_code(account)
        except BaseException:
            self._store.delete_account(account.id)
            raise
        log.info("enrolled a %s", enrollee.role)
        return EnrollmentResult("created", account.id, health_id, enrollee.role, reference, enrollee.address, warnings)

    def _reserve(self, enrollee: Enrollee, facility_id: str, key: str) -> Account | None:
        """Inserts the pending account with a fresh (or the imported) health ID; None when the
        enrollment key turned out to be taken."""
        for _ in range(_ISSUE_ATTEMPTS):
            health_id = enrollee.health_id or HealthId.generate()
            account = Account(id=new_id(), health_id=health_id.digits, role=enrollee.role, created_at=self._clock(),
                              status="pending", mobile=enrollee.mobile, address=enrollee.address,
                              facility_id=facility_id, enrollment_key=key)
            try:
                self._store.create_account(account, max_per_mobile=MAX_IDS_PER_MOBILE)
                return account
            except MobileLimitError:
                raise EnrollmentError(f"this mobile number already has {MAX_IDS_PER_MOBILE} health IDs") from None
            except DuplicateError as error:
                if error.field == "enrollment_key":
                    return None
                if error.field == "address":
                    raise EnrollmentError("this ABHA address is taken; choose another", 409) from None
                if enrollee.health_id is not None:
                    raise EnrollmentError("this health ID is already enrolled", 409) from None
        raise EnrollmentError("could not issue a unique health ID; try again", 503)

    def _re_enroll(self, account: Account, enrollee: Enrollee, facility_id: str,
                   warnings: tuple[str, ...]) -> EnrollmentResult:
        if account.status != "active":
            raise EnrollmentError("this person's enrollment is still in progress; try again", 409)
        if enrollee.address and account.address != enrollee.address:
            try:
                self._store.update_account(account.id, address=enrollee.address)
            except DuplicateError:
                raise EnrollmentError("this ABHA address is taken; choose another", 409) from None
        if enrollee.mobile != account.mobile:
            if self._store.count_accounts_by_mobile(enrollee.mobile) >= MAX_IDS_PER_MOBILE:
                raise EnrollmentError(f"this mobile number already has {MAX_IDS_PER_MOBILE} health IDs")
            self._store.update_account(account.id, mobile=enrollee.mobile)
        health_id = HealthId(account.health_id)
        current = account.patient_id and f"Patient/{account.patient_id}" or (
            account.practitioner_id and f"Practitioner/{account.practitioner_id}")
        before = self._current_version(current)
        reference = self._write_resources(enrollee, health_id, facility_id, current)
        outcome = "unchanged" if before == self._current_version(reference) else "updated"
        return EnrollmentResult(outcome, account.id, health_id, enrollee.role, reference,
                                enrollee.address or account.address, warnings)

    def reissue_password_code(self, principal: Principal, health_id: HealthId) -> None:
        """A new set-password code for someone enrolled at the caller's facility (lost code, forgotten
        password); earlier codes stop working."""
        account = self._store.account_by(health_id=health_id.digits)
        if account is None or account.status != "active" or account.role == "admin":
            raise EnrollmentError("no one enrolled with this health ID", 404)
        require_enroller(principal, account.facility_id or "", account.role)
        self._credentials.issue_password_code(account)

    def create_admin(self, mobile: str, password: str, address: str | None = None) -> Account:
        """An administrator account (no FHIR resource); only the ``create-admin`` command calls this."""
        for _ in range(_ISSUE_ATTEMPTS):
            health_id = HealthId.generate()
            check_password_policy(password, health_id=health_id.digits, address=address)
            account = Account(id=new_id(), health_id=health_id.digits, role="admin", created_at=self._clock(),
                              mobile=normalise_mobile(mobile), address=address,
                              password_hash=self._passwords.hash(password))
            try:
                self._store.create_account(account)
                return account
            except DuplicateError as error:
                if error.field == "address":
                    raise EnrollmentError("this ABHA address is taken; choose another", 409) from None
        raise EnrollmentError("could not issue a unique health ID; try again", 503)

    # --- FHIR resources, through the service layer --------------------------------------------------

    def _require_facility(self, facility_id: str) -> None:
        try:
            self._resources.read(self._policy, "Organization", facility_id)
        except FhirError as error:
            if error.status in (404, 410):
                raise EnrollmentError(f"the facility Organization/{facility_id} is not known", 422) from None
            raise

    def _current_version(self, reference: str | None) -> int | None:
        if not reference:
            return None
        resource_type, _, id = reference.partition("/")
        try:
            return self._resources.read(self._policy, resource_type, id).version
        except FhirError:
            return None

    def _write_resources(self, enrollee: Enrollee, health_id: HealthId, facility_id: str,
                         current: str | None) -> str:
        """Creates or updates the person's resource (and a practitioner's role at the facility);
        returns its reference."""
        if enrollee.is_staff:
            desired = practitioner_resource(enrollee, health_id, facility_id)
            query = f"identifier={PRACTITIONER_SYSTEM}|{health_id.formatted}"
        else:
            desired = patient_resource(enrollee, health_id, facility_id)
            query = f"identifier={HEALTH_ID_SYSTEM}|{health_id.formatted}"
        resource_type = desired["resourceType"]
        writer = AccessPolicy.for_holder(facility_id)  # the enrolling facility holds the record it creates
        if current is not None:
            id = current.partition("/")[2]
            existing: dict[str, Any] | None = orjson.loads(self._resources.read(self._policy, resource_type, id).body)
        else:  # a resource with an imported health ID may exist already: keep what it holds
            result = self._resources.create(writer, resource_type, desired, if_none_exist=query)
            id = result.stored.id
            existing = None if result.changed else orjson.loads(result.stored.body)
        if existing is not None:
            merged = merge_person(existing, desired)
            if not same_content(merged, existing):
                self._resources.update(writer, resource_type, id, merged)
        if enrollee.is_staff:
            self._resources.create(writer, "PractitionerRole", practitioner_role(id, facility_id, enrollee.role),
                                   if_none_exist=f"practitioner=Practitioner/{id}&organization=Organization/"
                                                 f"{facility_id}")
        return f"{resource_type}/{id}"


__all__ = ["EnrollmentError", "EnrollmentResult", "EnrollmentService", "MAX_IDS_PER_MOBILE", "RowError"]
