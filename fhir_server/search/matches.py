"""Search values to plan matches: one builder per parameter type (search.html, R4).

``build_criterion`` turns one ``name[:modifier]=value`` occurrence into a ``Criterion`` whose matches
are normalized the way ``extract`` indexes values, so a backend only compares. Comma-separated
values are ORed; ``\\,``, ``\\|``, ``\\$`` and ``\\\\`` escape the separators.

Two modifiers target the derived indexes that ``extract`` writes (names contain ``:`` so they never
clash with a parameter code): ``ref:identifier=sys|val`` is a token criterion on ``ref:identifier``
(matching ``Reference.identifier``), and ``identifier:of-type=sys|code|val`` a composite criterion on
``identifier:of-type`` (type coding, value).

A quantity criterion whose every value names a UCUM unit that converts (``search.ucum``) targets the
derived ``<param>:canonical`` index instead, with the search range converted to canonical units; any
other quantity criterion (no unit, another system, an unconvertible code, one such value among
several) matches the literal ``value|system|code``. ``ap`` widens the value by 10% in the unit the
client wrote, before converting (for a temperature that is 10% of the Celsius or Fahrenheit value).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

from fhir_server.errors import bad_request
from fhir_server.search.normalize import date_range, normalize_text, reference_parts
from fhir_server.search.plan import (
    CompositeMatch,
    Criterion,
    Match,
    MissingMatch,
    Prefix,
    RangeMatch,
    ReferenceMatch,
    StringMatch,
    TokenMatch,
    TokenTextMatch,
    UriMatch,
)
from fhir_server.search.registry import ComponentDef, SearchParamDef, SearchRegistry
from fhir_server.search.ucum import CANONICAL_SUFFIX, CANONICAL_SYSTEM, UCUM_SYSTEM, conversion

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_PREFIXES = frozenset(p.value for p in Prefix)
_KNOWN_MODIFIERS = frozenset({"missing", "exact", "contains", "text", "not", "above", "below", "in", "not-in",
                              "of-type", "identifier"})
_MODIFIERS = {
    "string": {"exact", "contains"},
    "token": {"not", "text", "of-type"},
    "reference": {"identifier"},
    "uri": {"above", "below"},
}


class _BadValue(Exception):
    """A search value that cannot be read; ``build_criterion`` names the parameter in the 400."""


def build_criterion(resource_type: str, name: str, definition: SearchParamDef, modifier: str, raw: str, *,
                    registry: SearchRegistry, base_url: str | None = None) -> Criterion | None:
    """The criterion for ``name=raw`` (``name`` as the client wrote it, for diagnostics); None when
    every value is empty (an empty parameter is ignored)."""
    values = [v for v in split_escaped(raw, ",") if v]
    if not values:
        return None
    try:
        if modifier == "missing":
            return Criterion(resource_type, definition.code, definition.type, tuple(_missing(v) for v in values))
        _check_modifier(definition, modifier, registry)
        if modifier == "identifier":
            return Criterion(resource_type, definition.code + ":identifier", "token",
                             tuple(_token(v) for v in values))
        if modifier == "of-type":
            return Criterion(resource_type, definition.code + ":of-type", "composite",
                             tuple(_of_type(v) for v in values))
        if definition.type == "quantity":
            canonical = tuple(m for v in values if (m := _canonical_quantity(v)) is not None)
            if len(canonical) == len(values):
                return Criterion(resource_type, definition.code + CANONICAL_SUFFIX, "quantity", canonical)
        matches = tuple(_match(definition, modifier, v, base_url) for v in values)
    except _BadValue as error:
        raise bad_request(f"Search parameter '{name}': {error}", expression=(name,)) from None
    return Criterion(resource_type, definition.code, definition.type, matches, negate=modifier == "not")


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on unescaped ``separator``; escapes stay in the parts for the next level of splitting."""
    if "\\" not in text:
        return text.split(separator)
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", text) if "\\" in text else text


def _check_modifier(definition: SearchParamDef, modifier: str, registry: SearchRegistry) -> None:
    if not modifier or modifier in _MODIFIERS.get(definition.type, ()):
        return
    if definition.type == "reference" and registry.is_resource_type(modifier):
        if definition.targets and modifier not in definition.targets:
            raise _BadValue(f"{modifier} is not a target type of this parameter "
                            f"({', '.join(definition.targets)})")
        return
    if modifier in _KNOWN_MODIFIERS:
        raise _BadValue(f"modifier :{modifier} is not supported for {definition.type} parameters")
    raise _BadValue(f"unknown modifier :{modifier}")


def _missing(value: str) -> MissingMatch:
    if value not in ("true", "false"):
        raise _BadValue(f":missing takes true or false, not {value!r}")
    return MissingMatch(value == "true")


def _match(definition: SearchParamDef, modifier: str, value: str, base_url: str | None) -> Match:
    if definition.type == "string":
        text = unescape(value)
        return StringMatch(text, "exact") if modifier == "exact" else StringMatch(
            normalize_text(text), modifier or "prefix")
    if definition.type == "token":
        return TokenTextMatch(normalize_text(unescape(value))) if modifier == "text" else _token(value)
    if definition.type == "reference":
        return _reference(value, modifier or None, definition, base_url)
    if definition.type == "uri":
        return UriMatch(unescape(value), modifier or "exact")
    if definition.type == "composite":
        return _composite(value, definition.components)
    return _SCALARS[definition.type](value)


def _token(value: str) -> TokenMatch:
    parts = [unescape(p) for p in split_escaped(value, "|")]
    if len(parts) == 1:
        return TokenMatch(None, parts[0], match_system=False)
    if len(parts) != 2 or parts == ["", ""]:
        raise _BadValue(f"{value!r} is not a token (code, |code, system|code or system|)")
    system, code = parts
    if not code:
        return TokenMatch(system, None, match_system=True, match_code=False)
    return TokenMatch(system or None, code, match_system=True)


def _of_type(value: str) -> CompositeMatch:
    parts = [unescape(p) for p in split_escaped(value, "|")]
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise _BadValue(f"{value!r} is not an identifier type and value (system|code|value)")
    system, code, identifier = parts
    return CompositeMatch((TokenMatch(system or None, code, match_system=bool(system)),
                           TokenMatch(None, identifier, match_system=False)), ("token", "token"))


def _reference(value: str, target_type: str | None, definition: SearchParamDef,
               base_url: str | None) -> ReferenceMatch:
    text = unescape(value)
    if base_url and text.startswith(base_url.rstrip("/") + "/"):
        text = text[len(base_url.rstrip("/")) + 1:]
    parts = reference_parts(text)
    if parts is None:
        raise _BadValue(f"{value!r} is not a reference (id, Type/id or an absolute URL)")
    found_type, found_id, url = parts
    if url is not None:
        return ReferenceMatch(None, None, url.split("|", 1)[0])
    if found_type is not None:
        if target_type not in (None, found_type):
            raise _BadValue(f"{value!r} is not a {target_type} reference")
        if definition.targets and found_type not in definition.targets:
            raise _BadValue(f"{found_type} is not a target type of this parameter")
    return ReferenceMatch(found_type or target_type, found_id, local_base=base_url.rstrip("/") + "/" if base_url else None)


def _composite(value: str, components: tuple[ComponentDef, ...]) -> CompositeMatch:
    parts = split_escaped(value, "$")
    if len(parts) != len(components) or not all(parts):
        raise _BadValue(f"{value!r} needs {len(components)} parts separated by $ "
                        f"({', '.join(c.code for c in components)})")
    return CompositeMatch(tuple(_match(SearchParamDef(c.code, c.type, c.expression), "", part, None)
                                for c, part in zip(components, parts, strict=True)), tuple(c.type for c in components))


def _prefixed(value: str) -> tuple[Prefix, str]:
    if value[:2] in _PREFIXES and len(value) > 2:
        return Prefix(value[:2]), value[2:]
    return Prefix.EQ, value


def _date(value: str) -> RangeMatch:
    prefix, text = _prefixed(unescape(value))
    bounds = date_range(text.replace(" ", "+"))  # an unencoded "+" in a time zone arrives as a space
    if bounds is None:
        raise _BadValue(f"{value!r} is not a date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][zone])")
    return RangeMatch(prefix, bounds[0], bounds[1])


def _number(value: str) -> RangeMatch:
    prefix, text = _prefixed(unescape(value))
    low, high = _number_range(text, value, prefix)
    return RangeMatch(prefix, low, high)


def _quantity(value: str) -> RangeMatch:
    prefix, text, system, code = _quantity_parts(value)
    low, high = _number_range(text, value, prefix)
    return RangeMatch(prefix, low, high, system, code)


def _canonical_quantity(value: str) -> RangeMatch | None:
    """``value`` against the canonical index, or None when its unit does not convert. A comparison
    (``gt``, ``le``, ...) is against the value itself, the middle of the range: here the range
    collapses to the converted value, which a rounded midpoint of converted bounds would miss."""
    prefix, text, system, code = _quantity_parts(value)
    converted = conversion(code) if system == UCUM_SYSTEM and code else None
    if converted is None:
        return None
    low, number, high = _decimal_range(text, value, prefix)
    if prefix not in (Prefix.EQ, Prefix.NE, Prefix.AP):
        low = high = number
    return RangeMatch(prefix, converted.apply(low), converted.apply(high), CANONICAL_SYSTEM, converted.unit)


def _quantity_parts(value: str) -> tuple[Prefix, str, str | None, str | None]:
    parts = [unescape(p) for p in split_escaped(value, "|")]
    if len(parts) not in (1, 3):
        raise _BadValue(f"{value!r} is not a quantity (number, number|system|code or number||code)")
    prefix, text = _prefixed(parts[0])
    system, code = (parts[1] or None, parts[2] or None) if len(parts) == 3 else (None, None)
    return prefix, text, system, code


def _number_range(text: str, value: str, prefix: Prefix) -> tuple[float, float]:
    low, _, high = _decimal_range(text, value, prefix)
    return float(low), float(high)


def _decimal_range(text: str, value: str, prefix: Prefix) -> tuple[Decimal, Decimal, Decimal]:
    """The range a number stands for at its precision, and the number: ``100`` is [99.5, 100.5),
    ``100.0`` is [99.95, 100.05) and ``1e2`` (one significant figure) is [50, 150). ``ap`` widens
    it to at least 10% of the value either side (search.html's recommendation)."""
    if not _NUMBER.fullmatch(text):
        raise _BadValue(f"{value!r} is not a number")
    number = Decimal(text)
    half = Decimal(5).scaleb(int(number.as_tuple().exponent) - 1)
    if prefix is Prefix.AP:
        half = max(half, abs(number) / 10)
    return number - half, number, number + half


_SCALARS: dict[str, Callable[[str], Match]] = {"date": _date, "number": _number, "quantity": _quantity}
