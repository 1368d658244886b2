"""The registry generator: expression splitting, and (given the official package) reproducibility of
the committed JSON."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fhir_server.search.fhirpath import branches
from scripts.generate_search_params import OUTPUT, build, dumps


def test_union_is_split_only_at_top_level() -> None:
    expression = "(Observation.value as Quantity) | Observation.component.where(code = 'a|b') | Patient.name"
    assert list(branches(expression)) == [
        "(Observation.value as Quantity)", "Observation.component.where(code = 'a|b')", "Patient.name"]


@pytest.mark.skipif(not os.environ.get("FHIR_R4_EXAMPLES"),
                    reason="set FHIR_R4_EXAMPLES to an unpacked hl7.fhir.r4.examples package directory")
def test_committed_registry_is_what_the_generator_builds() -> None:
    assert dumps(build(Path(os.environ["FHIR_R4_EXAMPLES"]))) == OUTPUT.read_bytes()
