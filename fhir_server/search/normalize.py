"""Normalization shared by index extraction (write side) and query parsing (read side).

Both sides must turn ``"Müller "``, ``"1980-05"`` and ``"Patient/1/_history/2"`` into the same index
form, so the rules live here once: strings are accent-stripped, case-folded and whitespace-collapsed;
dates become half-open ``[low, high)`` millisecond ranges (UTC) at the precision they were written
with; references become (type, id, url).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta

_TYPE = re.compile(r"[A-Z][A-Za-z]+")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DAY_MS = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@functools.lru_cache(maxsize=16384)
def normalize_text(value: str) -> str:
    """Accent- and case-insensitive form of a string with single spaces (FHIR string matching).
    Memoized: codes' display texts and names repeat across resources far more than they vary."""
    if not value.isascii():
        decomposed = unicodedata.normalize("NFKD", value)
        value = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(value.casefold().split())


def date_range(value: str) -> tuple[int, int] | None:
    """``[low, high)`` in ms since the epoch (UTC) covered by a FHIR date, dateTime or instant at its
    precision (``1980`` is the whole year, ``10:00:00.5`` a tenth of a second); None when ``value``
    is not one. Values without a time zone are read as UTC."""
    length = len(value)
    if length < 4 or not value.isascii() or not value[:4].isdigit():
        return None
    if length > 10:
        return _time_range(value) if value[10] == "T" else None
    year = int(value[:4])
    if length == 4:
        return _days_from_civil(year, 1, 1) * _DAY_MS, _days_from_civil(year + 1, 1, 1) * _DAY_MS
    if value[4] != "-" or not value[5:7].isdigit() or not 1 <= (month := int(value[5:7])) <= 12:
        return None
    if length == 7:
        start = _days_from_civil(year, month, 1) * _DAY_MS
        return start, start + _days_in_month(year, month) * _DAY_MS
    if length != 10 or value[7] != "-" or not value[8:].isdigit():
        return None
    try:
        start = (date(year, month, int(value[8:])).toordinal() - _EPOCH_ORDINAL) * _DAY_MS
    except ValueError:
        return None
    return start, start + _DAY_MS


def _time_range(value: str) -> tuple[int, int] | None:
    """A dateTime with a time (``THH:MM``, ``:SS``, ``.fff...``) and an optional ``Z``/``±HH:MM`` zone.
    The shape (and so the precision) is checked here; ``fromisoformat`` (C) does the arithmetic."""
    time = value[11:]
    zone_at = max(time.find("Z"), time.find("+"), time.find("-"))
    clock, zone = (time, "") if zone_at < 0 else (time[:zone_at], time[zone_at:])
    length = len(clock)
    if length == 5:
        width = 60_000
    elif length == 8:
        width = 1000
    elif length > 9 and clock[8] == "." and clock[9:].isdigit():
        width = 10 ** max(0, 12 - length)
    else:
        return None
    if clock[2] != ":" or (length > 5 and clock[5] != ":") or (len(zone) not in (0, 1, 6)):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    low = (moment - _EPOCH) // _MILLISECOND
    return low, low + width


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _MONTH_DAYS[month - 1]


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (valid beyond ``datetime``'s 9999)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


@functools.lru_cache(maxsize=16384)
def reference_parts(reference: str) -> tuple[str | None, str | None, str | None] | None:
    """``(type, id, url)`` of a literal reference: ``Patient/1`` and ``Patient/1/_history/2`` give the
    type and id; an absolute URL gives its URL (history stripped) plus type and id when it ends in
    ``Type/id``; a bare id gives only the id. None for contained (``#x``) and unreadable references.
    Memoized: the same patients and practitioners are referenced by resource after resource."""
    if not reference or reference[0] == "#":
        return None
    absolute = "://" in reference or reference.startswith("urn:")
    segments = reference.split("/")
    if len(segments) >= 4 and segments[-2] == "_history":
        segments = segments[:-2]
    if len(segments) >= 2 and _TYPE.fullmatch(segments[-2]) and _ID.fullmatch(segments[-1]):
        if absolute:
            return segments[-2], segments[-1], "/".join(segments)
        return (segments[0], segments[1], None) if len(segments) == 2 else None
    if absolute:
        return None, None, reference
    return (None, reference, None) if len(segments) == 1 and _ID.fullmatch(reference) else None
