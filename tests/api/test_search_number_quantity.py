"""Number and quantity search (search.html "number", "quantity"): ``eq`` within the precision of the
value as written, comparisons against the value, ``ap`` within 10%, quantities by value and by
``system|code`` or ``||code``."""

from __future__ import annotations

import pytest

from tests.api.ncd_clinic import UCUM, Clinic

RISKS = {"risk-asha", "risk-ravi", "risk-zoe"}


@pytest.mark.parametrize(("value", "expected"), [
    ("0.22", {"risk-asha"}),
    ("0.2", {"risk-asha"}),  # 0.2 stands for [0.15, 0.25)
    ("0.3", {"risk-zoe"}),
    ("0.30", set()),  # [0.295, 0.305): 0.305 is just outside
    ("0.305", {"risk-zoe"}),
    ("1e-1", {"risk-ravi"}),
    ("gt0.2", {"risk-asha", "risk-zoe"}),
    ("lt0.22", {"risk-ravi"}),
    ("le0.22", {"risk-ravi", "risk-asha"}),
    ("ge0.22", {"risk-asha", "risk-zoe"}),
    ("ne0.22", {"risk-ravi", "risk-zoe"}),
    ("sa0.08", {"risk-asha", "risk-zoe"}),
    ("eb0.22", {"risk-ravi"}),
    ("ap0.30", {"risk-zoe"}),  # within 10%
    ("ap0.5", set()),
    ("0.08,0.305", {"risk-ravi", "risk-zoe"}),
])
def test_number_prefixes_and_precision(clinic: Clinic, value: str, expected: set[str]) -> None:
    assert clinic.found(f"RiskAssessment?probability={value}") == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("182", {"glu-asha"}),
    (f"182|{UCUM}|mg/dL", {"glu-asha"}),
    ("182||mg/dL", {"glu-asha"}),
    (f"182|{UCUM}|mmol/L", set()),
    ("gt100||mg/dL", {"glu-asha"}),
    ("lt100||mg/dL", {"glu-ravi"}),
    (f"7.8|{UCUM}|mmol/L", {"glu-zoe"}),
    ("5.6||%25", {"a1c-meena"}),  # a code without a system
    (f"5.6|{UCUM}|%25", set()),
    ("le8.2||%25", {"a1c-asha", "a1c-jose", "a1c-meena"}),
    ("ap8||%25", {"a1c-asha"}),
    ("ge140||mm[Hg]", set()),  # the blood pressures sit in components, not in the value
])
def test_quantity_by_value_system_and_code(clinic: Clinic, value: str, expected: set[str]) -> None:
    assert clinic.found(f"Observation?value-quantity={value}") == expected


def test_missing_on_numbers_quantities_and_composites(clinic: Clinic) -> None:
    assert clinic.found("RiskAssessment?probability:missing=false") == RISKS
    assert clinic.found("Observation?value-quantity:missing=false") == {
        "glu-asha", "glu-ravi", "glu-zoe", "a1c-asha", "a1c-jose", "a1c-meena"}
    assert clinic.found("Observation?component-code-value-quantity:missing=true") == {
        "glu-asha", "glu-ravi", "glu-zoe", "a1c-asha", "a1c-jose", "a1c-meena"}


@pytest.mark.parametrize("query", ["RiskAssessment?probability=abc", "RiskAssessment?probability=0.2.2",
                                   "RiskAssessment?probability=xx0.2", "RiskAssessment?probability=gt",
                                   "Observation?value-quantity=1|2", "Observation?value-quantity=high||mg"])
def test_unreadable_numbers_and_quantities_are_bad_requests(clinic: Clinic, query: str) -> None:
    assert clinic.status(query) == 400
