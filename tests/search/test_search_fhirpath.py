"""The FHIRPath subset compiler: every official expression compiles, and each construct evaluates
to the right JSON values with the right FHIR types."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.search.fhirpath import CompiledPath, FhirPathError, compile_path
from fhir_server.search.registry import SearchRegistry

REGISTRY = SearchRegistry.load()
TYPES = REGISTRY.element_types


def path(expression: str, context: str, **kwargs: Any) -> CompiledPath:
    return compile_path(expression, context, TYPES, **kwargs)


def test_every_registered_expression_and_component_compiles() -> None:
    compiled = 0
    for resource_type in REGISTRY.resource_types():
        for definition in REGISTRY.for_type(resource_type).values():
            expression = path(definition.expression, resource_type)
            compiled += 1
            for component in definition.components:
                for element_type in expression.types:
                    path(component.expression, element_type, resource_type=resource_type)
    assert compiled > 2500


def test_only_expressionless_special_and_inconsistent_parameters_are_unsupported() -> None:
    assert {(u.base, u.code) for u in REGISTRY.unsupported()} == {
        ("Resource", "_text"), ("Resource", "_content"), ("Resource", "_query"),
        ("Location", "near"), ("DocumentReference", "relationship")}


def test_choice_element_yields_each_present_variant_with_its_type() -> None:
    observation = {"valueQuantity": {"value": 1}, "effectivePeriod": {"start": "2024"}}
    assert path("Observation.value", "Observation")(observation) == [({"value": 1}, "Quantity")]
    assert path("Observation.effective", "Observation")(observation) == [({"start": "2024"}, "Period")]


@pytest.mark.parametrize("expression", [
    "Observation.value as Quantity", "(Observation.value as Quantity)", "Observation.value.as(Quantity)",
    "Observation.value.ofType(Quantity)",
])
def test_type_selection_forms_pick_one_choice(expression: str) -> None:
    observation = {"valueQuantity": {"value": 1}, "valueString": "x"}
    assert path(expression, "Observation")(observation) == [({"value": 1}, "Quantity")]


def test_type_names_match_choice_suffixes_case_insensitively() -> None:
    compiled = path("value.as(DateTime)", "Observation")
    assert compiled({"valueDateTime": "2024"}) == [("2024", "dateTime")]


def test_navigation_after_a_type_selection() -> None:
    observation = {"valueCodeableConcept": {"text": "positive"}}
    assert path("(Observation.value as CodeableConcept).text", "Observation")(observation) == [("positive", "string")]


def test_arrays_are_flattened_and_nulls_dropped() -> None:
    patient = {"name": [{"given": ["A", None, "B"]}, {"given": ["C"]}]}
    assert path("Patient.name.given", "Patient")(patient) == [("A", "string"), ("B", "string"), ("C", "string")]


def test_where_resolve_is_filters_references_by_their_type_without_resolving() -> None:
    observation = {"subject": {"reference": "Patient/1"}}
    compiled = path("Observation.subject.where(resolve() is Patient)", "Observation")
    assert compiled(observation) == [({"reference": "Patient/1"}, "Reference")]
    assert compiled({"subject": {"reference": "Group/1"}}) == []
    assert compiled({"subject": {"reference": "http://x.org/fhir/Patient/1/_history/3"}}) == [
        ({"reference": "http://x.org/fhir/Patient/1/_history/3"}, "Reference")]
    assert compiled({"subject": {"display": "no reference"}}) == []


def test_where_with_an_equality_filters_elements() -> None:
    patient = {"telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]}
    assert path("Patient.telecom.where(system='email')", "Patient")(patient) == [
        ({"system": "email", "value": "a@b"}, "ContactPoint")]


@pytest.mark.parametrize(("patient", "expected"), [
    ({"deceasedBoolean": True}, True),
    ({"deceasedBoolean": False}, False),
    ({"deceasedDateTime": "2020"}, True),
    ({}, False),
])
def test_exists_and_inequality_use_three_valued_logic(patient: dict[str, Any], expected: bool) -> None:
    compiled = path("Patient.deceased.exists() and Patient.deceased != false", "Patient")
    assert compiled(patient) == [(expected, "boolean")]
    assert compiled.roots is None


def test_union_concatenates_branches_and_collects_root_keys() -> None:
    compiled = path("Organization.name | Organization.alias", "Organization")
    assert compiled({"name": "A", "alias": ["B"]}) == [("A", "string"), ("B", "string")]
    assert set(compiled.roots or ()) == {"name", "alias"}


def test_relative_expressions_apply_to_the_context() -> None:
    assert path("name | alias", "InsurancePlan")({"name": "A"}) == [("A", "string")]


def test_indexer_and_first_take_leading_items() -> None:
    bundle = {"entry": [{"resource": {"resourceType": "Composition", "id": "c"}}, {"resource": {"id": "p"}}]}
    assert path("Bundle.entry[0].resource", "Bundle")(bundle) == [
        ({"resourceType": "Composition", "id": "c"}, "Resource")]
    assert path("Bundle.entry.resource.first()", "Bundle")(bundle) == [
        ({"resourceType": "Composition", "id": "c"}, "Resource")]


def test_resource_variable_reaches_the_root_from_a_component() -> None:
    sequence = {"referenceSeq": {"chromosome": {"text": "1"}}, "variant": [{"start": 5}]}
    compiled = path("%resource.referenceSeq.chromosome", "MolecularSequence.variant",
                    resource_type="MolecularSequence")
    assert compiled(sequence["variant"][0], sequence) == [({"text": "1"}, "CodeableConcept")]


def test_backbone_elements_are_typed_by_their_path() -> None:
    observation = {"component": [{"code": {"text": "sys"}}]}
    assert path("Observation.component", "Observation")(observation) == [
        ({"code": {"text": "sys"}}, "Observation.component")]
    assert path("code", "Observation.component")({"code": {"text": "sys"}}) == [({"text": "sys"}, "CodeableConcept")]


def test_resource_level_expressions_apply_to_any_resource_type() -> None:
    assert path("Resource.meta.lastUpdated", "Citation")({"meta": {"lastUpdated": "2024"}}) == [("2024", "instant")]
    assert path("Resource.id", "Patient").roots == ("id",)


def test_string_literals_understand_escapes() -> None:
    compiled = path("Patient.telecom.where(system='it\\'s')", "Patient")
    assert compiled({"telecom": [{"system": "it's"}]}) == [({"system": "it's"}, "ContactPoint")]


@pytest.mark.parametrize(("expression", "context"), [
    ("Patient.name.substring(1)", "Patient"),
    ("Patient.name.count()", "Patient"),
    ("Patient.nickname", "Patient"),
    ("Observation.value as Identifier", "Observation"),
    ("Patient.name", "Observation"),
    ("%context.name", "Patient"),
    ("Patient.name[first]", "Patient"),
    ("Patient.name +", "Patient"),
    ("Patient.name.where(use = 'official'", "Patient"),
    ("Patient.gender.resolve()", "Patient"),
    ("Patient.name ~ 'x'", "Patient"),
])
def test_expressions_outside_the_subset_fail_at_compile_time(expression: str, context: str) -> None:
    with pytest.raises(FhirPathError):
        path(expression, context)
