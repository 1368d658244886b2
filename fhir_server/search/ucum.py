"""UCUM codes to canonical units, so a quantity search can match values written in other units
(search.html: "the search processor may choose to perform a search based on canonical units").

A quantity in ``http://unitsofmeasure.org`` whose code converts is indexed twice: as written, and
under ``<param>:canonical`` in base units (kg, m, s, mol, K, ...: pint's base units) with the
internal ``CANONICAL_SYSTEM`` and the base units as its code (``kilogram.meter-3``). Values of
different dimensions get different codes, so mmol/L never meets mg/dL. Conversions use decimal
arithmetic rounded to 15 significant digits, the same way for stored values and search bounds, so
``5.35 mg`` and ``0.00535 g`` become the same number.

Not converted (such quantities match only literally, by the same code): codes ucumvert cannot
parse, arbitrary units (``[IU]``, ``[arb'U]``, ...: UCUM forbids converting them), and units that
are neither proportional nor affine (logarithmic: ``B``, ``dB``, ``Np``). Temperatures are affine:
``Cel`` and ``[degF]`` convert as points on the scale (``37 Cel`` is ``310.15 K``); units that
combine an offset unit with others (``Cel/h``) do not parse.

The canonical codes are stored, so they are built from pint's base-unit names rather than its text
formatting; a ucumvert/pint upgrade that renamed base units would need the stores re-indexed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Context, Decimal
from functools import lru_cache
from typing import Any

UCUM_SYSTEM = "http://unitsofmeasure.org"
CANONICAL_SYSTEM = "urn:fhir-server:ucum-canonical"
CANONICAL_SUFFIX = ":canonical"

_DIGITS = Context(prec=15)
_LINEAR_TOLERANCE = Decimal("1e-9")
_SPAN = 1000  # the scale is measured over this many units: a float difference of nearby values is coarse
# UCUM's arbitrary units (ucum-essence.xml, isArbitrary="yes"): "not of any specific dimension and
# not commensurable with any other unit" (UCUM §28). All are bracketed atoms.
_ARBITRARY = frozenset({
    "[hp_X]", "[hp_C]", "[hp_M]", "[hp_Q]", "[kp_X]", "[kp_C]", "[kp_M]", "[kp_Q]", "[iU]", "[IU]", "[arb'U]",
    "[USP'U]", "[GPL'U]", "[MPL'U]", "[APL'U]", "[beth'U]", "[anti'Xa'U]", "[todd'U]", "[dye'U]", "[smgy'U]",
    "[bdsk'U]", "[ka'U]", "[knk'U]", "[mclg'U]", "[tb'U]", "[CCID_50]", "[TCID_50]", "[EID_50]", "[PFU]", "[FFU]",
    "[CFU]", "[IR]", "[BAU]", "[AU]", "[Amb'a'1'U]", "[PNU]", "[Lf]", "[D'ag'U]", "[FEU]", "[ELU]", "[EU]",
})


@dataclass(frozen=True, slots=True)
class Conversion:
    """``canonical = value * scale + offset``, in ``unit`` (offset is zero except for temperatures)."""

    scale: Decimal
    offset: Decimal
    unit: str

    def apply(self, value: Decimal | float | int) -> float:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        return float(_DIGITS.create_decimal(number * self.scale + self.offset))


@lru_cache(maxsize=2048)
def conversion(code: str) -> Conversion | None:
    """The conversion of UCUM ``code`` to canonical units; None when it has none (see the module).
    Cached per code for the process; the unit registry is built on first use."""
    if _is_arbitrary(code):
        return None
    try:
        return _convert(_registry(), code)
    except Exception:  # noqa: BLE001 - the parser and pint raise many kinds of error for a bad code
        return None


def _is_arbitrary(code: str) -> bool:
    start = code.find("[")
    while start != -1:
        end = code.find("]", start)
        if end == -1:
            return False
        if code[start:end + 1] in _ARBITRARY:
            return True
        start = code.find("[", end)
    return False


def _convert(registry: Any, code: str) -> Conversion | None:
    parsed = registry.from_ucum(code)
    units, factor = parsed.units, parsed.magnitude

    def base(value: float) -> Any:
        return registry.Quantity(value * factor, units).to_base_units()

    zero, one, two = (Decimal(repr(float(base(v).magnitude))) for v in (0, 1, 2))
    if not one > zero or abs(two - 2 * one + zero) > (one - zero) * _LINEAR_TOLERANCE:
        return None  # not affine (a logarithmic unit)
    step = (Decimal(repr(float(base(_SPAN).magnitude))) - zero) / _SPAN
    return Conversion(_DIGITS.create_decimal(step), _DIGITS.create_decimal(zero), _unit_code(base(1).units))


def _unit_code(units: Any) -> str:
    """Base units as text independent of pint's formatting: ``kilogram.meter-3``, ``1`` for none."""
    parts = []
    for name, exponent in sorted(dict(units._units).items()):
        power = int(exponent) if float(exponent).is_integer() else exponent
        parts.append(name if power == 1 else f"{name}{power}")
    return ".".join(parts) or "1"


_registry_lock = threading.Lock()
_built: list[Any] = []  # the registry, once built


def prepare() -> None:
    """Build the registry now (the server does at start-up), not during the first request that
    needs a conversion."""
    _registry()


def _registry() -> Any:
    """ucumvert's pint registry (about a second to build): once per process, on first use."""
    if not _built:
        with _registry_lock:
            if not _built:
                from ucumvert import PintUcumRegistry

                _built.append(PintUcumRegistry())
    return _built[0]
