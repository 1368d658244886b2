"""The server judges a parsed resource (``model_validate``), where the validation floor of the ingest
bench and the library's own entry point judge JSON text (``model_validate_json``): the two must agree
on every verdict and every failing element path, or the speed-up would change what is accepted."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_server.errors import FhirError
from fhir_server.resources.validation import validate_resource
from tests.api import examples, nrces

BAD_VALUES: list[Any] = [1, 1.5, -1, 0, True, None, "", "  ", "x", "true", "1", "2020-13-01", [], [None], ["a"], {},
                         {"a": 1}, 1e308]


def _resources() -> list[dict[str, Any]]:
    document = nrces.discharge_summary()
    return [*examples.first_class("p1"), document, *(entry["resource"] for entry in document["entry"])]


def _mutations(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every top-level element, and every element of the first item below it, set to each bad value."""
    for key, value in resource.items():
        if key == "resourceType":
            continue
        for bad in BAD_VALUES:
            changed = copy.deepcopy(resource)
            changed[key] = bad
            yield changed
        inner = value[0] if isinstance(value, list) and value else value
        if isinstance(inner, dict):
            for inner_key in inner:
                for bad in BAD_VALUES:
                    changed = copy.deepcopy(resource)
                    target = changed[key][0] if isinstance(changed[key], list) else changed[key]
                    target[inner_key] = bad
                    yield changed


def _text_verdict(resource: dict[str, Any]) -> set[str] | None:
    """The failing element paths by ``model_validate_json`` (None when valid)."""
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate_json(orjson.dumps(resource))
    except ValidationError as error:
        return {".".join(str(part) for part in err["loc"]) for err in error.errors(include_url=False)}
    except (ValueError, TypeError):
        return {"(value error)"}
    return None


def _server_verdict(resource: dict[str, Any]) -> set[str] | None:
    try:
        validate_resource(resource["resourceType"], resource)
    except FhirError as error:
        if error.issues:
            prefix = len(resource["resourceType"]) + 1
            return {issue.expression[0][prefix:].replace("[", ".").replace("]", "") for issue in error.issues}
        return {"(value error)"}
    return None


@pytest.mark.parametrize("resource", _resources(), ids=lambda r: f"{r['resourceType']}-{r.get('id', 'new')}")
def test_parsed_and_text_validation_agree(resource: dict[str, Any]) -> None:
    cases = [resource, *_mutations(resource)]
    invalid = 0
    for case in cases:
        before = orjson.dumps(case)
        expected = _text_verdict(case)
        assert _server_verdict(case) == expected, before.decode()[:300]
        assert orjson.dumps(case) == before  # validation leaves the caller's resource as it was
        invalid += expected is not None
    assert _text_verdict(resource) is None
    assert invalid > len(cases) // 4  # the mutations do break most resources


def test_validate_resource_returns_the_judged_json() -> None:
    resource = examples.patient()
    assert orjson.loads(validate_resource("Patient", resource)) == resource
