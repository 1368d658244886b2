"""Typed, normalized search-index values extracted from a resource at write time.

One value class per SearchParameter type (HAPI's per-type index tables). Storage backends persist
these atomically with the resource and compile SearchPlans against them; nothing ever searches raw
resource JSON.

Dates are half-open ``[low, high)`` ranges in integer milliseconds since the Unix epoch (UTC) at the
precision of the stored value, so ``1980`` covers the whole year. ``DATE_MIN`` / ``DATE_MAX`` stand
for open ends (a Period without ``start`` or ``end``).
"""

from __future__ import annotations

from dataclasses import dataclass

DATE_MIN = -(2**62)
DATE_MAX = 2**62


@dataclass(frozen=True, slots=True)
class StringValue:
    param: str
    normalized: str  # accent- and case-folded, whitespace collapsed: serves the default prefix match
    exact: str  # as written: serves :exact


@dataclass(frozen=True, slots=True)
class TokenValue:
    param: str
    system: str | None
    code: str | None
    text: str | None = None  # display / CodeableConcept.text, normalized like StringValue: serves :text


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    param: str
    target_type: str | None  # "Patient" for "Patient/123" (also for absolute URLs ending in Type/id)
    target_id: str | None
    url: str | None = None  # the literal reference when absolute or canonical (versions stripped)


@dataclass(frozen=True, slots=True)
class DateValue:
    param: str
    low: int  # inclusive, ms since epoch UTC
    high: int  # exclusive


@dataclass(frozen=True, slots=True)
class NumberValue:
    param: str
    value: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    param: str
    value: float
    system: str | None
    code: str | None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    param: str
    uri: str


ScalarValue = StringValue | TokenValue | ReferenceValue | DateValue | NumberValue | QuantityValue | UriValue


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """One combination of component values taken from the same repeating element."""

    param: str
    parts: tuple[ScalarValue, ...]


IndexValue = ScalarValue | CompositeValue
