"""Compartment membership generated from the official CompartmentDefinitions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fhir_server.search.compartments import compartment_names, membership
from fhir_server.search.registry import SearchRegistry
from scripts.generate_compartments import OUTPUT, build, dumps


def test_patient_compartment_links_clinical_types_through_their_patient_parameters() -> None:
    patient = membership("Patient", SearchRegistry.load())
    assert patient["Observation"] == ("subject", "performer")
    assert patient["Encounter"] == ("patient",)
    assert "patient" in patient["ExplanationOfBenefit"]
    assert "Practitioner" not in patient and "Organization" not in patient


def test_every_official_compartment_is_available() -> None:
    assert compartment_names() == ("Device", "Encounter", "Patient", "Practitioner", "RelatedPerson")


@pytest.mark.skipif(not os.environ.get("FHIR_R4_EXAMPLES"),
                    reason="set FHIR_R4_EXAMPLES to an unpacked hl7.fhir.r4.examples package directory")
def test_committed_compartments_are_what_the_generator_builds() -> None:
    assert dumps(build(Path(os.environ["FHIR_R4_EXAMPLES"]))) == OUTPUT.read_bytes()
