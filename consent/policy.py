"""The AccessPolicy the service applies to every storage call.

Built per request from the caller's verified token (``consent.authorization``); no route does its own
access checks. A policy answers three questions the services ask:

- which resource types the caller may read and write at all (their SMART scopes);
- which stored resources of the *guarded* types (patient data: the Patient compartment's members,
  Patient itself, and the containers that carry patient data) the caller may see: ``rows``, a rule
  that both adds criteria to a search plan and judges a single stored resource, so a search and a
  read of the same resource always agree;
- what the server stamps on the caller's writes: the record holder (the facility the caller acts
  for), kept in ``meta.security`` under ``HOLDER_SYSTEM``. Clients cannot set or remove that label.

``observer`` is told what patient data a read disclosed (the audit trail).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from fhir_server.errors import FhirError
from fhir_server.search.plan import (
    AnyCriterion,
    ChainAnyCriterion,
    ChainCriterion,
    CompartmentCriterion,
    Criterion,
    HasCriterion,
    SearchPlan,
    TokenMatch,
)
from fhir_server.storage.base import HOLDER_SYSTEM, StoredResource


# containers that carry patient data without being members of the Patient compartment
PATIENT_DATA_CONTAINERS = frozenset({"Bundle", "Binary"})

_PATIENT_REFERENCE = re.compile(rb'"reference":"(?:[^"]*/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^"]*)?"')


def forbidden(message: str) -> FhirError:
    return FhirError(403, "forbidden", message)


def holder_code(facility_id: str) -> str:
    return f"Organization/{facility_id}"


def holder_label(facility_id: str) -> dict[str, str]:
    return {"system": HOLDER_SYSTEM, "code": holder_code(facility_id), "display": "record holder"}


def holders_of(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The record-holder labels a resource carries."""
    return [c for c in (resource.get("meta") or {}).get("security") or () if c.get("system") == HOLDER_SYSTEM]


def with_holders(resource: dict[str, Any], holders: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``resource`` with its record-holder labels replaced by ``holders``: whatever a client put under
    ``HOLDER_SYSTEM`` is dropped. Returns ``resource`` itself when nothing changes."""
    meta = resource.get("meta")
    security = (meta or {}).get("security") or []
    kept = [c for c in security if not (isinstance(c, dict) and c.get("system") == HOLDER_SYSTEM)]
    if len(kept) == len(security) and not holders:
        return resource
    new_meta = dict(meta or {})
    if kept or holders:
        new_meta["security"] = [*kept, *holders]
    else:
        new_meta.pop("security", None)
    changed = dict(resource)
    if new_meta:
        changed["meta"] = new_meta
    else:
        changed.pop("meta", None)
    return changed


def patients_referenced(stored: StoredResource) -> set[str]:
    """The ids of the Patients a stored resource is about, for the audit trail: a Patient itself, and
    every Patient it references (a cheap scan of the stored JSON, never a parse)."""
    found = {m.decode() for m in _PATIENT_REFERENCE.findall(stored.body)}
    if stored.resource_type == "Patient":
        found.add(stored.id)
    return found


class RowRule(Protocol):
    """Which stored resources of the guarded types a caller may see."""

    description: str

    def criteria(self, resource_types: Sequence[str]) -> list[AnyCriterion]:
        """What to AND into a search over ``resource_types`` (all guarded); 403 when no criterion can
        express the rule for that combination of types."""
        ...

    def permits(self, stored: StoredResource) -> bool: ...

    def present(self, stored: StoredResource) -> StoredResource:
        """The resource as this caller is shown it."""
        ...

    def check(self, plan: SearchPlan) -> None:
        """403 for a search this caller may not run (beyond the types it names)."""
        ...


@dataclass(frozen=True, slots=True)
class HolderRule:
    """Staff and facility systems: the records their own facility holds."""

    facility_id: str

    @property
    def description(self) -> str:
        return f"records held by {holder_code(self.facility_id)}"

    def criteria(self, resource_types: Sequence[str]) -> list[AnyCriterion]:
        match = TokenMatch(HOLDER_SYSTEM, holder_code(self.facility_id), True)
        return [Criterion(resource_types[0], "_security", "token", (match,), guard=True)]

    def permits(self, stored: StoredResource) -> bool:
        code = holder_code(self.facility_id)
        if stored.holders is not None:  # read beside the body: no parse
            return code in stored.holders
        if code.encode() not in stored.body:  # the common refusal needs no parse
            return False
        return any(c.get("code") == code for c in holders_of(orjson.loads(stored.body)))

    def present(self, stored: StoredResource) -> StoredResource:
        return stored

    def check(self, plan: SearchPlan) -> None:
        """Nothing beyond the row criteria."""


@dataclass(frozen=True, slots=True)
class CompartmentRule:
    """A patient: their own Patient resource and the members of their Patient compartment.
    ``members`` maps each member type to its compartment reference parameters; ``references``
    returns the ``(type, id)`` targets of one parameter of a stored resource."""

    patient_id: str
    members: Mapping[str, tuple[str, ...]]
    references: Callable[[StoredResource, tuple[str, ...]], Iterable[tuple[str | None, str | None]]]
    # AuditEvents name every patient a request disclosed: a patient sees only their part of each
    # (``audit_view``), and searches them only by parameters that look at no other entity
    audit_view: Callable[[bytes, str], bytes] | None = None
    audit_params: frozenset[str] = frozenset()

    @property
    def description(self) -> str:
        return f"the compartment of Patient/{self.patient_id}"

    def criteria(self, resource_types: Sequence[str]) -> list[AnyCriterion]:
        if tuple(resource_types) == ("Patient",):
            return [Criterion("Patient", "_id", "token", (TokenMatch(None, self.patient_id, False),))]
        outside = [t for t in resource_types if t not in self.members]
        if outside:
            raise forbidden(f"{', '.join(outside)} resources are not in your compartment; search one of its "
                            "resource types")
        pkeys = tuple(f"{t}.{p}" for t in resource_types for p in self.members[t])
        return [CompartmentCriterion(resource_types[0], pkeys, "Patient", self.patient_id)]

    def permits(self, stored: StoredResource) -> bool:
        if stored.resource_type == "Patient" and stored.id == self.patient_id:
            return True
        params = self.members.get(stored.resource_type)
        if not params or self.patient_id.encode() not in stored.body:
            return False
        return ("Patient", self.patient_id) in set(self.references(stored, params))

    def present(self, stored: StoredResource) -> StoredResource:
        if stored.resource_type != "AuditEvent" or self.audit_view is None or stored.deleted:
            return stored
        return replace(stored, body=self.audit_view(stored.body, self.patient_id))

    def check(self, plan: SearchPlan) -> None:
        if "AuditEvent" not in plan.resource_types and not any(_reaches_audit(c) for c in plan.criteria):
            return
        params = [*(c.param for c in plan.criteria if isinstance(c, Criterion)), *(k.param for k in plan.sort)]
        refused = sorted({p for p in params if p not in self.audit_params})
        own = ("Patient", self.patient_id)
        foreign = [c for c in plan.criteria if not isinstance(c, Criterion) and not (
            isinstance(c, CompartmentCriterion) and (c.compartment_type, c.compartment_id) == own)]
        if refused or foreign:
            names = ", ".join(refused) or "chains, _has or another patient's compartment"
            raise forbidden(f"a patient searches their audit trail by {', '.join(sorted(self.audit_params))}; "
                            f"not by {names}")


def _reached_type(c: AnyCriterion) -> str | None:
    """The resource type a chain (its target) or ``_has`` (its source) looks into; None for others."""
    if isinstance(c, ChainCriterion):
        return c.target_type
    if isinstance(c, HasCriterion):
        return c.source_type
    return None


def _reaches_audit(c: AnyCriterion) -> bool:
    if isinstance(c, ChainAnyCriterion):
        return any(_reaches_audit(a) for a in c.alternatives)
    reached = _reached_type(c)
    if reached is None:
        return False
    assert isinstance(c, ChainCriterion | HasCriterion)
    return reached == "AuditEvent" or _reaches_audit(c.inner)


class Observer(Protocol):
    def disclosed(self, interaction: str, detail: str, resources: Sequence[StoredResource]) -> None: ...


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    may: Callable[[str, str], bool] | None = None  # (type, "read" | "write") → allowed; None: everything
    guarded: frozenset[str] = frozenset()  # patient-data types; their rows go through ``rows``
    rows: RowRule | None = None  # None while ``guarded`` is not empty: no guarded rows at all
    writes_guarded: bool = True  # whether the caller may create and change patient data
    holder: str | None = None  # the facility stamped as record holder on the caller's writes
    read_only: frozenset[str] = frozenset()  # written by the server alone (the audit trail)
    observer: Observer | None = field(default=None, compare=False)
    refusal: str = "reading patient data needs the patient's consent"

    @classmethod
    def unrestricted(cls) -> AccessPolicy:
        return cls()

    @classmethod
    def for_holder(cls, facility_id: str) -> AccessPolicy:
        """The server acting for a facility (enrollment): unrestricted, writes stamped with it."""
        return cls(holder=facility_id)

    # --- resource types ------------------------------------------------------------------------

    def can_read(self, resource_type: str) -> bool:
        if self.may is not None and not self.may(resource_type, "read"):
            return False
        return resource_type not in self.guarded or self.rows is not None

    def can_write(self, resource_type: str) -> bool:
        if resource_type in self.read_only or (self.may is not None and not self.may(resource_type, "write")):
            return False
        return self.writes_guarded or resource_type not in self.guarded

    def require_read(self, resource_type: str) -> None:
        if self.may is not None and not self.may(resource_type, "read"):
            raise forbidden(f"your token's scopes do not cover reading {resource_type} resources")
        if resource_type in self.guarded and self.rows is None:
            raise forbidden(f"{self.refusal}: {resource_type} resources are patient data")

    def require_write(self, resource_type: str) -> None:
        if resource_type in self.read_only:
            raise forbidden(f"{resource_type} resources are written by the server alone")
        if self.may is not None and not self.may(resource_type, "write"):
            raise forbidden(f"writing {resource_type} resources is not permitted with your token")
        if not self.writes_guarded and resource_type in self.guarded:
            raise forbidden(f"writing {resource_type} resources is not permitted for your role")

    # --- rows ----------------------------------------------------------------------------------

    @property
    def restricted(self) -> bool:
        return bool(self.guarded)

    def permits(self, stored: StoredResource) -> bool:
        """Whether the caller may see this stored (current or past) version."""
        if not self.can_read(stored.resource_type):
            return False
        if stored.resource_type not in self.guarded:
            return True
        assert self.rows is not None
        return not stored.deleted and self.rows.permits(stored)

    def require_visible(self, stored: StoredResource) -> StoredResource:
        """The resource as the caller is shown it; 403 when they may not see it."""
        if not self.permits(stored):
            raise forbidden(f"{stored.resource_type}/{stored.id} is outside {self._scope()}; {self.refusal}")
        return self.shown(stored)

    def require_changeable(self, stored: StoredResource | None) -> None:
        """Updates, patches and deletes change only what the caller may see (a deleted resource may
        be brought back by anyone who may write its type)."""
        if stored is not None and not stored.deleted and stored.resource_type in self.guarded \
                and not self.permits(stored):
            raise forbidden(f"{stored.resource_type}/{stored.id} is held by another facility; "
                            "only the record holder may change it")

    def restrict(self, plan: SearchPlan) -> None:
        """ANDs the row rule into ``plan`` and into every chain and ``_has`` inside it that reaches
        guarded resources, so neither matches nor the criteria that select them see other rows; a
        chain or ``_has`` into a type the token's scopes do not cover is refused (403)."""
        if not self.guarded and self.may is None:
            return
        if self.rows is not None:
            self.rows.check(plan)
        if any(t in self.guarded for t in plan.resource_types):
            assert self.rows is not None  # require_read ran for every type of the plan
            plan.criteria.extend(self.rows.criteria(plan.resource_types))
        plan.criteria[:] = [self._guard(c) for c in plan.criteria]

    def restrict_criteria(self, resource_type: str, criteria: list[AnyCriterion]) -> list[AnyCriterion]:
        """Conditional interactions' criteria: they find only what the caller may see."""
        if not self.guarded and self.may is None:
            return criteria
        guarded = [self._guard(c) for c in criteria]
        if resource_type in self.guarded and self.rows is not None:
            guarded += self.rows.criteria((resource_type,))
        return guarded

    def _guard(self, c: AnyCriterion) -> AnyCriterion:
        if isinstance(c, ChainAnyCriterion):
            return self._guard_alternatives(c)
        reached = _reached_type(c)
        if reached is None:
            return c
        assert isinstance(c, ChainCriterion | HasCriterion)
        self.require_read(reached)  # the scopes, whether or not the type is patient data
        inner = self._guard(c.inner)
        if reached not in self.guarded:
            return replace(c, inner=inner)
        assert self.rows is not None
        return replace(c, inner=inner, guard=(*c.guard, *self.rows.criteria((reached,))))

    def _guard_alternatives(self, c: ChainAnyCriterion) -> ChainCriterion | ChainAnyCriterion:
        """An untyped chain goes only to the target types the caller may read: an alternative whose
        target (or a type its chain reaches further on) is refused is left out, and only when every
        one is refused is the first refusal raised."""
        guarded: list[ChainCriterion] = []
        refusal: FhirError | None = None
        for alternative in c.alternatives:
            try:
                chain = self._guard(alternative)  # checks the target type first, then further on
            except FhirError as error:
                if error.status != 403:
                    raise
                refusal = refusal or error
                continue
            assert isinstance(chain, ChainCriterion)
            guarded.append(chain)
        if not guarded:
            assert refusal is not None
            raise refusal
        return guarded[0] if len(guarded) == 1 else replace(c, alternatives=tuple(guarded))

    def visible(self, resources: Iterable[StoredResource]) -> list[StoredResource]:
        """The permitted ones, each as the caller is shown it."""
        return [self.shown(s) for s in resources if self.permits(s)]

    def shown(self, stored: StoredResource) -> StoredResource:
        """A permitted resource as the caller is shown it (a patient's view of an AuditEvent)."""
        if self.rows is None or stored.resource_type not in self.guarded:
            return stored
        return self.rows.present(stored)

    # --- audit ---------------------------------------------------------------------------------

    def disclosed(self, interaction: str, detail: str, resources: Sequence[StoredResource]) -> None:
        """Reports what a read handed out (only the guarded resources matter)."""
        if self.observer is None:
            return
        shown = [s for s in resources if s.resource_type in self.guarded and not s.deleted]
        if shown:
            self.observer.disclosed(interaction, detail, shown)

    def _scope(self) -> str:
        return self.rows.description if self.rows is not None else "what you may read"
