"""Turning identity records into a backend's column or document values and back.

Each backend stores datetimes its own way (SQLite: milliseconds since the epoch; MongoDB: naive
UTC) and structured fields its own way (SQLite: JSON text); the field kinds come from the
dataclasses' type hints, so a new field needs no mapping code.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal, TypeVar

R = TypeVar("R")
Kind = Literal["time", "json", "bool", "plain"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def kinds(cls: type) -> dict[str, Kind]:
    hints = typing.get_type_hints(cls)
    result: dict[str, Kind] = {}
    for f in fields(cls):
        text = str(hints[f.name])
        if "datetime" in text:
            result[f.name] = "time"
        elif "dict" in text or "list" in text:
            result[f.name] = "json"
        elif text == "<class 'bool'>":
            result[f.name] = "bool"
        else:
            result[f.name] = "plain"
    return result


def to_ms(moment: datetime) -> int:
    return (moment.astimezone(UTC) - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def to_naive(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return utc.replace(tzinfo=None, microsecond=utc.microsecond // 1000 * 1000)


def from_naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def build(cls: type[R], values: dict[str, Any]) -> R:
    return cls(**{name: values[name] for name in kinds(cls) if name in values})
