"""Who may use the identity endpoints: the rules in one place, each a small testable function.

(The FHIR API's rules live in ``consent.policy``; these cover enrollment, health cards and look-ups.)
"""

from __future__ import annotations

from fhir_server.errors import FhirError

from consent.store import Account
from consent.tokens import Principal

PEOPLE_STAFF = frozenset({"practitioner", "facility-admin", "admin"})


def forbidden(message: str) -> FhirError:
    return FhirError(403, "forbidden", message)


def require_enroller(principal: Principal, facility_id: str, role: str) -> None:
    """Admins enroll anyone at any facility; a facility administrator enrolls patients and
    practitioners at their own facility only."""
    if principal.role == "admin":
        return
    if principal.role != "facility-admin":
        raise forbidden("enrollment is for facility administrators")
    if principal.facility_id != facility_id:
        raise forbidden("a facility administrator enrolls people at their own facility only")
    if role not in ("patient", "practitioner"):
        raise forbidden(f"only an administrator enrolls a {role}")


def can_look_up(principal: Principal) -> bool:
    """Staff look people up by health ID, address or card; so do system clients allowed to read Patients."""
    return principal.role in PEOPLE_STAFF or (principal.role == "system" and principal.allows("Patient", "read"))


def require_look_up(principal: Principal) -> None:
    if not can_look_up(principal):
        raise forbidden("looking people up by health ID is for authorised staff")


def is_holder(principal: Principal, account: Account) -> bool:
    return principal.role != "system" and principal.subject == account.id


def require_card_access(principal: Principal, account: Account | None) -> None:
    """The holder, and authorised staff, may fetch a health card."""
    if account is not None and is_holder(principal, account):
        return
    if not can_look_up(principal):
        raise forbidden("a health card is for its holder and authorised staff")
