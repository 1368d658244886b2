"""Write-time extraction of typed, normalized index values from a resource (plain JSON).

Every parameter of the resource's type is evaluated with its compiled FHIRPath expression (compiled
once per type, on first use) and each result is converted by the parameter type and the result's
FHIR type: a ``HumanName`` gives one string value per name part, a ``CodeableConcept`` one token per
coding, a ``Period`` one date range, and so on. Values of a type a parameter cannot use (a ``Range``
for a quantity, ``SampledData``) are skipped.

Two derived indexes serve modifiers that need more than the value itself; their names contain ``:``
so they can never collide with a real parameter code:

- ``<reference param>:identifier``: token values from ``Reference.identifier`` (the ``:identifier``
  modifier);
- ``<token param>:of-type``: composite values (``Identifier.type`` coding, ``Identifier.value``) (the
  ``:of-type`` modifier);
- ``<quantity param>:canonical``: a UCUM quantity in canonical units (``search.ucum``), which quantity
  searches with a convertible UCUM unit compare against. Composite components stay literal.

A reference parameter whose value is a whole inline resource (``Bundle.composition``, ``Bundle.message``:
the first entry's Composition or MessageHeader) indexes that resource only when it is of a target
type, and also indexes the inline resource's own values as ``<param>.<its param>``
(``composition.subject``), its bundle-local references (``urn:uuid:`` fullUrls) resolved to the
entries' ``Type/id``: a chain through such a parameter (``Bundle?composition.subject=Patient/1``)
searches these values, since the inline resource is not stored on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

from fhir_server.search.fhirpath import Evaluator, compile_path
from fhir_server.search.index_values import (
    DATE_MAX,
    DATE_MIN,
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.normalize import date_range, normalize_text, reference_parts
from fhir_server.search.registry import SearchParamDef, SearchRegistry
from fhir_server.search.ucum import CANONICAL_SUFFIX, CANONICAL_SYSTEM, UCUM_SYSTEM, conversion

Converter = Callable[[str, Any], list[Any]]
"""``(parameter code, JSON value) -> index values``."""

CURRENCY_SYSTEM = "urn:iso:std:iso:4217"
_QUANTITY_TYPES = ("Quantity", "Age", "Duration", "Distance", "Count")  # Quantity and its R4 specializations


class IndexExtractor:
    """Extracts index values for any resource type the registry knows."""

    def __init__(self, registry: SearchRegistry) -> None:
        self._registry = registry
        self._compiled: dict[str, tuple[_Param, ...]] = {}

    def extract(self, resource: Mapping[str, Any]) -> list[IndexValue]:
        """All index values of ``resource``, without duplicates, in parameter order."""
        resource_type = resource["resourceType"]
        params = self._compiled.get(resource_type)
        if params is None:
            params = self._compiled[resource_type] = self._compile(resource_type)
        root = [(resource, resource_type)]  # evaluators never modify their input
        values: list[IndexValue] = []
        for param in params:
            if param.roots is not None:
                for key in param.roots:
                    if key in resource:
                        break
                else:
                    continue
            items = param.evaluate(root, resource)
            if not items:
                continue
            if param.components:
                values += _composites(param, items, resource)
            elif param.embeds:
                items = [i for i in items if i[1] != "Resource" or i[0].get("resourceType") in param.embeds]
                values += _convert(param.code, param.converters, items)
                values += self._embedded(param.code, items, resource)
            else:
                values += _convert(param.code, param.converters, items)
        return list(dict.fromkeys(values))

    def _embedded(self, code: str, items: list[tuple[Any, str]], container: Mapping[str, Any]) -> list[IndexValue]:
        local = _bundle_targets(container)
        prefix = code + "."
        values: list[IndexValue] = []
        for value, value_type in items:
            if value_type == "Resource":
                values += [_embed(prefix, v, local) for v in self.extract(value)]
        return values

    def _compile(self, resource_type: str) -> tuple[_Param, ...]:
        return tuple(self._compile_param(resource_type, d) for d in self._registry.for_type(resource_type).values())

    def _compile_param(self, resource_type: str, definition: SearchParamDef) -> _Param:
        element_types = self._registry.element_types
        path = compile_path(definition.expression, resource_type, element_types)
        components: dict[str, tuple[_Component, ...]] = {}
        if definition.components:
            for element_type in path.types:
                components[element_type] = tuple(
                    _Component(c.code, compile_path(c.expression, element_type, element_types,
                                                    resource_type=resource_type).evaluate, SCALAR_CONVERTERS[c.type])
                    for c in definition.components)
        converters = {**SCALAR_CONVERTERS.get(definition.type, {})}
        for value_type, extra in _DERIVED.get(definition.type, {}).items():
            converters[value_type] = _with_derived(converters[value_type], extra)
        embeds = definition.targets if definition.type == "reference" and "Resource" in path.types else ()
        return _Param(definition.code, path.roots, path.evaluate, converters, components, embeds)


@dataclass(frozen=True, slots=True)
class _Component:
    code: str
    evaluate: Evaluator
    converters: Mapping[str, Converter]


@dataclass(frozen=True, slots=True)
class _Param:
    code: str
    roots: tuple[str, ...] | None  # skip evaluation when the resource has none of these keys
    evaluate: Evaluator
    converters: Mapping[str, Converter]
    components: Mapping[str, tuple[_Component, ...]]  # by the FHIR type of the composite's element
    embeds: tuple[str, ...] = ()  # inline-resource parameter: the resource types it indexes


def _bundle_targets(container: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{fullUrl: (type, id)}`` of a Bundle's entries whose resource has an id."""
    targets: dict[str, tuple[str, str]] = {}
    for entry in container.get("entry", ()) if container.get("resourceType") == "Bundle" else ():
        resource, full_url = entry.get("resource"), entry.get("fullUrl")
        if isinstance(resource, dict) and isinstance(full_url, str) and resource.get("id"):
            targets[full_url] = (resource.get("resourceType"), resource["id"])
    return targets


def _embed(prefix: str, value: IndexValue, local: Mapping[str, tuple[str, str]]) -> IndexValue:
    if isinstance(value, ReferenceValue) and value.url in local:
        target_type, target_id = local[value.url]
        return ReferenceValue(prefix + value.param, target_type, target_id)
    return replace(value, param=prefix + value.param)


def _composites(param: _Param, items: list[tuple[Any, str]], resource: Any) -> list[IndexValue]:
    """One value per combination of component values taken from the same element. All component
    expressions are evaluated before any value is converted: most elements lack some component
    (an Observation without ``valueCodeableConcept``), and conversion is the expensive part."""
    values: list[IndexValue] = []
    for element in items:
        components = param.components[element[1]]
        found = [component.evaluate([element], resource) for component in components]
        if not all(found):
            continue
        parts = [_component_values(_convert(c.code, c.converters, f)) for c, f in zip(components, found, strict=True)]
        if all(parts):
            values += [CompositeValue(param.code, combination) for combination in product(*parts)]
    return values


def _component_values(values: list[Any]) -> list[Any]:
    """A composite's component values as composite searches can match them. No modifier applies to
    a component, so a token component matches by system and code only: its text is left out, and a
    text-only token (``CodeableConcept.text``) leaves no combination at all. For the Synthea
    Observations that is a tenth fewer index rows, and fewer entries in the text index."""
    return [v if v.__class__ is not TokenValue or v.text is None else TokenValue(v.param, v.system, v.code)
            for v in values if v.__class__ is not TokenValue or v.system is not None or v.code is not None]


def _convert(code: str, converters: Mapping[str, Converter], items: list[tuple[Any, str]]) -> list[Any]:
    values: list[Any] = []
    for value, value_type in items:
        convert = converters.get(value_type)
        if convert is not None:
            values += convert(code, value)
    return values


def _with_derived(convert: Converter, derived: Converter) -> Converter:
    return lambda code, value: convert(code, value) + derived(code, value)


# --- string ------------------------------------------------------------------------------------

def _strings(code: str, texts: Iterable[Any]) -> list[StringValue]:
    return [StringValue(code, normalize_text(t), t) for t in texts if t.__class__ is str and t]


def _string(code: str, value: str) -> list[StringValue]:
    return [StringValue(code, normalize_text(value), value)] if value else []


def _human_name(code: str, name: dict[str, Any]) -> list[StringValue]:
    return _strings(code, [name.get("family"), name.get("text"), *name.get("given", ()),
                           *name.get("prefix", ()), *name.get("suffix", ())])


def _address(code: str, address: dict[str, Any]) -> list[StringValue]:
    return _strings(code, [*address.get("line", ()), address.get("city"), address.get("district"),
                           address.get("state"), address.get("postalCode"), address.get("country"),
                           address.get("text")])


# --- token -------------------------------------------------------------------------------------

def _code(code: str, value: str) -> list[TokenValue]:
    return [TokenValue(code, None, value)]


def _boolean(code: str, value: bool) -> list[TokenValue]:
    return [TokenValue(code, None, "true" if value else "false")]


def _coding(code: str, coding: dict[str, Any]) -> list[TokenValue]:
    display = coding.get("display")
    token = TokenValue(code, coding.get("system"), coding.get("code"), normalize_text(display) if display else None)
    return [token] if token.system or token.code or token.text else []


def _codeable_concept(code: str, concept: dict[str, Any]) -> list[TokenValue]:
    tokens = [t for coding in concept.get("coding", ()) for t in _coding(code, coding)]
    text = concept.get("text")
    if text:
        tokens.append(TokenValue(code, None, None, normalize_text(text)))
    return tokens


def _identifier(code: str, identifier: dict[str, Any]) -> list[TokenValue]:
    type_text = identifier.get("type", {}).get("text")
    token = TokenValue(code, identifier.get("system"), identifier.get("value"),
                       normalize_text(type_text) if type_text else None)
    return [token] if token.system or token.code else []


def _identifier_of_type(code: str, identifier: dict[str, Any]) -> list[CompositeValue]:
    value = identifier.get("value")
    if not value:
        return []
    name = code + ":of-type"
    return [CompositeValue(name, (TokenValue(name, c.get("system"), c.get("code")), TokenValue(name, None, value)))
            for c in identifier.get("type", {}).get("coding", ()) if c.get("code")]


def _contact_point(code: str, contact: dict[str, Any]) -> list[TokenValue]:
    value = contact.get("value")
    return [TokenValue(code, None, value)] if value else []


# --- reference ---------------------------------------------------------------------------------

def _reference(code: str, reference: dict[str, Any]) -> list[ReferenceValue]:
    literal = reference.get("reference")
    parts = reference_parts(literal) if literal.__class__ is str else None
    if parts is None:
        return []
    target_type, target_id, url = parts
    return [ReferenceValue(code, target_type or reference.get("type"), target_id, url)]


def _reference_identifier(code: str, reference: dict[str, Any]) -> list[TokenValue]:
    identifier = reference.get("identifier")
    return _identifier(code + ":identifier", identifier) if identifier else []


def _canonical(code: str, value: str) -> list[ReferenceValue]:
    return [ReferenceValue(code, None, None, value.split("|", 1)[0])]


def _inline_resource(code: str, resource: dict[str, Any]) -> list[ReferenceValue]:
    resource_type, resource_id = resource.get("resourceType"), resource.get("id")
    return [ReferenceValue(code, resource_type, resource_id)] if resource_type and resource_id else []


# --- date, number, quantity, uri ---------------------------------------------------------------

def _date(code: str, value: str) -> list[DateValue]:
    bounds = date_range(value)
    return [DateValue(code, *bounds)] if bounds else []


def _period(code: str, period: dict[str, Any]) -> list[DateValue]:
    bounds = _period_bounds(period)
    return [DateValue(code, *bounds)] if bounds else []


def _period_bounds(period: dict[str, Any]) -> tuple[int, int] | None:
    start, end = period.get("start"), period.get("end")
    low = date_range(start) if start else None
    high = date_range(end) if end else None
    if low is None and high is None:
        return None
    return low[0] if low else DATE_MIN, high[1] if high else DATE_MAX


def _timing(code: str, timing: dict[str, Any]) -> list[DateValue]:
    """Only the outer limits of a schedule count (search.html): first event or bound to last."""
    ranges = [r for r in map(date_range, timing.get("event", ())) if r]
    bounds = timing.get("repeat", {}).get("boundsPeriod")
    if bounds and (period := _period_bounds(bounds)):
        ranges.append(period)
    return [DateValue(code, min(r[0] for r in ranges), max(r[1] for r in ranges))] if ranges else []


def _number(code: str, value: int | float) -> list[NumberValue]:
    return [NumberValue(code, float(value))]


def _quantity(code: str, quantity: dict[str, Any]) -> list[QuantityValue]:
    value = quantity.get("value")
    if value is None:
        return []
    return [QuantityValue(code, float(value), quantity.get("system"), quantity.get("code"), quantity.get("unit"))]


def _canonical_quantity(code: str, quantity: dict[str, Any]) -> list[QuantityValue]:
    value, unit = quantity.get("value"), quantity.get("code")
    if value is None or quantity.get("system") != UCUM_SYSTEM or not isinstance(unit, str):
        return []
    converted = conversion(unit)
    if converted is None:
        return []
    return [QuantityValue(code + CANONICAL_SUFFIX, converted.apply(value), CANONICAL_SYSTEM, converted.unit)]


def _money(code: str, money: dict[str, Any]) -> list[QuantityValue]:
    value = money.get("value")
    if value is None:
        return []
    currency = money.get("currency")
    return [QuantityValue(code, float(value), CURRENCY_SYSTEM if currency else None, currency)]


def _uri(code: str, value: str) -> list[UriValue]:
    return [UriValue(code, value)]


SCALAR_CONVERTERS: Mapping[str, Mapping[str, Converter]] = {
    "string": {"string": _string, "markdown": _string, "HumanName": _human_name, "Address": _address},
    "token": {"code": _code, "id": _code, "string": _code, "uri": _code, "boolean": _boolean,
              "Coding": _coding, "CodeableConcept": _codeable_concept, "Identifier": _identifier,
              "ContactPoint": _contact_point},
    "reference": {"Reference": _reference, "canonical": _canonical, "uri": _canonical,
                  "Resource": _inline_resource},
    "date": {"date": _date, "dateTime": _date, "instant": _date, "Period": _period, "Timing": _timing},
    "number": {"decimal": _number, "integer": _number},
    "quantity": {**{t: _quantity for t in _QUANTITY_TYPES}, "Money": _money},
    "uri": {"uri": _uri, "url": _uri, "canonical": _uri},
}
"""Converters by parameter type, then by the FHIR type of the value: the value types each
parameter type can index (the generator lists parameters that yield none of them as unsupported)."""

_DERIVED: Mapping[str, Mapping[str, Converter]] = {
    "reference": {"Reference": _reference_identifier},
    "token": {"Identifier": _identifier_of_type},
    "quantity": {t: _canonical_quantity for t in _QUANTITY_TYPES},
}
