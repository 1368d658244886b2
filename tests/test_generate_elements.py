"""The element tables behind ``_summary`` and ``_elements``, generated from the official R4
StructureDefinitions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scripts.generate_elements import OUTPUT, build, dumps


def test_summary_elements_follow_is_summary_into_backbone_elements() -> None:
    observation = json.loads(OUTPUT.read_bytes())["t"]["Observation"]
    assert observation["m"] == ["code", "status"]
    assert observation["s"]["component"] == {"code": 1, "modifierExtension": 1, "value[x]": 1}
    assert observation["s"]["value[x]"] == 1 and "category" not in observation["s"]
    assert "value" in observation["x"]


@pytest.mark.skipif(not os.environ.get("FHIR_R4_EXAMPLES"),
                    reason="set FHIR_R4_EXAMPLES to an unpacked hl7.fhir.r4.examples package directory")
def test_committed_element_tables_are_what_the_generator_builds() -> None:
    assert dumps(build(Path(os.environ["FHIR_R4_EXAMPLES"]))) == OUTPUT.read_bytes()
