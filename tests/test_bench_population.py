"""The search benchmark's synthetic population: deterministic, valid R4, consistent references, and
big enough (at least 50 resources per patient, so 500,000 at the default 10,000 patients)."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from fhir_server.resources.validation import validate_resource

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def population() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_population", BENCH / "population.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def test_same_seed_gives_the_same_resources(population: ModuleType) -> None:
    first = list(population.resources(population.plan_population(20, seed=7)))
    again = list(population.resources(population.plan_population(20, seed=7)))
    other = list(population.resources(population.plan_population(20, seed=8)))
    assert first == again
    assert first != other


def test_a_patients_record_does_not_depend_on_the_population_size(population: ModuleType) -> None:
    small, large = population.plan_population(10), population.plan_population(40)
    assert small.patients == large.patients[:10]
    assert list(population.patient_resources(small, small.patients[3])) == list(
        population.patient_resources(large, large.patients[3]))


def test_every_resource_is_valid_r4_with_unique_ids_and_references_that_resolve(population: ModuleType) -> None:
    resources = list(population.resources(population.plan_population(15)))
    keys = [f"{r['resourceType']}/{r['id']}" for r in resources]
    assert len(keys) == len(set(keys))
    for resource in resources:
        validate_resource(resource["resourceType"], resource)
    known = set(keys)
    references = [v["reference"] for r in resources for v in _values(r) if isinstance(v, dict) and "reference" in v]
    assert references and all(reference in known for reference in references)


def test_patients_carry_a_14_digit_abha_number(population: ModuleType) -> None:
    plan = population.plan_population(200)
    numbers = [p.abha for p in plan.patients]
    assert all(re.fullmatch(r"\d{2}-\d{4}-\d{4}-\d{4}", n) for n in numbers)
    assert len(set(numbers)) == len(numbers)


def test_the_default_size_holds_at_least_500000_resources_over_several_years(population: ModuleType) -> None:
    plan = population.plan_population(population.DEFAULT_PATIENTS)
    sample = plan.patients[:200]
    resources = [r for p in sample for r in population.patient_resources(plan, p)]
    assert len(resources) / len(sample) * population.DEFAULT_PATIENTS >= 500_000
    kinds = Counter(r["resourceType"] for r in resources)
    assert {"Patient", "Encounter", "Observation", "Condition", "MedicationRequest"} <= set(kinds)
    codes = Counter(r["code"]["coding"][0]["code"] for r in resources if r["resourceType"] == "Observation")
    assert {"8867-4", "29463-7", "8302-2", "39156-5", "85354-9", "2339-0", "1558-6", "4548-4"} <= set(codes)
    years = {r["effectiveDateTime"][:4] for r in resources if r["resourceType"] == "Observation"}
    assert len(years) >= 5


def _values(node: object) -> list[object]:
    """Every dict and list nested in ``node``."""
    found: list[object] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            found.append(current)
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return found
