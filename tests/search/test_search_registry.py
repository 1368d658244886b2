"""The packaged parameter registry: coverage of every resource type and the shape of definitions."""

from __future__ import annotations

import importlib
import pkgutil

import fhir.resources.R4B as r4b
import pytest
from fhir.resources.R4B.resource import Resource

from fhir_server.search.registry import ComponentDef, SearchParamDef, SearchRegistry

REGISTRY = SearchRegistry.load()
RESOURCE_PARAMS = {"_id": "token", "_lastUpdated": "date", "_tag": "token", "_security": "token",
                   "_profile": "uri", "_source": "uri"}


def _resource_classes_in(module_name: str) -> set[str]:
    module = importlib.import_module(f"{r4b.__name__}.{module_name}")
    return {name for name, value in vars(module).items()
            if isinstance(value, type) and issubclass(value, Resource) and value.__module__ == module.__name__
            and name.lower() == module_name} - {"Resource", "DomainResource"}


def test_load_returns_one_shared_registry() -> None:
    assert SearchRegistry.load() is REGISTRY


def test_every_r4b_resource_type_is_listed() -> None:
    """R4B has one module per type, named in lower case: any module not matching a listed type must
    be a data type (importing only those keeps the test fast)."""
    listed = {t.lower() for t in REGISTRY.resource_types()}
    unlisted = [m.name for m in pkgutil.iter_modules(r4b.__path__) if m.name not in listed]
    assert "humanname" in unlisted and "patient" not in unlisted
    assert [m for m in unlisted if _resource_classes_in(m)] == []


def test_every_type_has_the_resource_level_parameters() -> None:
    for resource_type in REGISTRY.resource_types():
        params = REGISTRY.for_type(resource_type)
        assert {code: params[code].type for code in RESOURCE_PARAMS} == RESOURCE_PARAMS


def test_patient_parameters_have_types_expressions_and_targets() -> None:
    assert REGISTRY.get("Patient", "birthdate") == SearchParamDef("birthdate", "date", "Patient.birthDate")
    assert REGISTRY.get("Patient", "name") == SearchParamDef("name", "string", "Patient.name")
    practitioner = REGISTRY.get("Patient", "general-practitioner")
    assert practitioner is not None and practitioner.targets == ("Organization", "Practitioner", "PractitionerRole")


def test_shared_definitions_keep_only_the_branch_for_the_type() -> None:
    assert REGISTRY.get("Condition", "code") == SearchParamDef("code", "token", "Condition.code")
    patient = REGISTRY.get("Observation", "patient")
    assert patient is not None and patient.expression == "Observation.subject.where(resolve() is Patient)"


def test_composite_components_are_resolved_to_codes_types_and_relative_expressions() -> None:
    definition = REGISTRY.get("Observation", "component-code-value-quantity")
    assert definition == SearchParamDef("component-code-value-quantity", "composite", "Observation.component", (), (
        ComponentDef("component-code", "token", "code"),
        ComponentDef("component-value-quantity", "quantity", "value.as(Quantity)")))


def test_references_to_any_type_list_every_type() -> None:
    target = REGISTRY.get("Provenance", "target")
    assert target is not None and set(target.targets) == set(REGISTRY.resource_types())


def test_unknown_types_and_codes_are_absent() -> None:
    assert REGISTRY.get("Patient", "nickname") is None
    assert REGISTRY.get("Spaceship", "_id") is None
    assert dict(REGISTRY.for_type("Spaceship")) == {}
    assert not REGISTRY.is_resource_type("Spaceship")


def test_unsupported_parameters_are_listed_with_reasons_and_never_offered() -> None:
    unsupported = REGISTRY.unsupported()
    assert 0 < len(unsupported) <= 6
    assert all(u.reason for u in unsupported)
    assert REGISTRY.get("Location", "near") is None
    assert REGISTRY.get("Patient", "_text") is None
    assert REGISTRY.is_unsupported("Location", "near")
    assert REGISTRY.is_unsupported("Patient", "_content")
    assert not REGISTRY.is_unsupported("Patient", "name")


def test_definitions_cannot_be_modified() -> None:
    params = REGISTRY.for_type("Patient")
    with pytest.raises(TypeError):
        params["x"] = params["name"]  # type: ignore[index]


def test_union_parameters_are_the_observation_combos_with_their_parts() -> None:
    unions = {(t, code): parts for t in REGISTRY.resource_types() for code, parts in REGISTRY.unions(t).items()}
    assert unions == {
        ("Observation", "combo-code"): ("code", "component-code"),
        ("Observation", "combo-code-value-concept"): ("code-value-concept", "component-code-value-concept"),
        ("Observation", "combo-code-value-quantity"): ("code-value-quantity", "component-code-value-quantity"),
        ("Observation", "combo-data-absent-reason"): ("component-data-absent-reason", "data-absent-reason"),
        ("Observation", "combo-value-concept"): ("component-value-concept", "value-concept"),
        ("Observation", "combo-value-quantity"): ("component-value-quantity", "value-quantity"),
    }


def test_a_union_needs_parts_of_its_own_type_covering_every_term() -> None:
    quantity = SearchParamDef("q", "quantity", "(X.value as Quantity)")
    data = {
        "both": SearchParamDef("both", "quantity", "(X.value as Quantity) | (X.part.value as Quantity)"),
        "q": quantity,
        "part": SearchParamDef("part", "quantity", "X.part.value as Quantity"),
        "codes": SearchParamDef("codes", "token", "X.code | X.part.code | X.other"),  # X.other: no part has it
        "code": SearchParamDef("code", "token", "X.code"),
        "part-code": SearchParamDef("part-code", "token", "X.part.code"),
        "mixed": SearchParamDef("mixed", "token", "X.code | X.value"),  # X.value is a quantity's term
        "refs": SearchParamDef("refs", "reference", "X.a | X.b", ("Patient",)),
        "a": SearchParamDef("a", "reference", "X.a", ("Patient",)),
        "b": SearchParamDef("b", "reference", "X.b", ("Patient",)),
    }
    registry = SearchRegistry({"X": data}, ("X",), {})
    assert dict(registry.unions("X")) == {"both": ("q", "part")}
    assert dict(registry.unions("Unknown")) == {}
