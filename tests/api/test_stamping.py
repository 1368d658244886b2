"""The server's ids and instants, as clients see them in ``id`` and ``meta.lastUpdated``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fhir_server.service import stamping
from fhir_server.service.stamping import format_instant, new_id, new_resource_id


def test_new_ids_are_distinct_random_uuids() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case, hyphenated, 36 characters
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every hex digit outside the version and variant bits varies
    assert {text[14] for text in ids} == {"4"}
    assert {text[19] for text in ids} == set("89ab")
    assert {text[0] for text in ids} == set("0123456789abcdef")


def test_resource_ids_of_one_second_share_a_prefix_that_does_not_tell_the_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_700_000_000.25]
    monkeypatch.setattr(stamping, "_clock", lambda: clock[0])
    same_second = [new_resource_id() for _ in range(2000)]
    assert len(set(same_second)) == len(same_second)
    for text in same_second:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    assert {text[:13] for text in same_second} == {same_second[0][:13]}  # 48 bits: the second's prefix
    assert len({text[15:] for text in same_second}) == len(same_second)  # the rest is random
    assert {text[15] for text in same_second} == set("0123456789abcdef")

    prefixes = []
    for second in range(1_700_000_001, 1_700_000_041):
        clock[0] = second + 0.5
        prefixes.append(new_resource_id()[:13])
    assert len(set(prefixes)) == len(prefixes)
    assert prefixes != sorted(prefixes)  # a keyed hash, not the time: ids do not sort by creation
    v7 = f"{(1_700_000_001 * 1000 + 500):012x}"  # where a UUIDv7 keeps its timestamp
    assert prefixes[0].replace("-", "") != v7


def test_instants_are_utc_with_milliseconds() -> None:
    assert format_instant(datetime(2024, 3, 1, 10, 0, 0, 123999, tzinfo=UTC)) == "2024-03-01T10:00:00.123Z"
    assert format_instant(datetime(2024, 3, 1, 0, 0, tzinfo=UTC)) == "2024-03-01T00:00:00.000Z"
    ist = timezone(timedelta(hours=5, minutes=30))
    assert format_instant(datetime(2024, 3, 1, 3, 0, 0, 5000, tzinfo=ist)) == "2024-02-29T21:30:00.005Z"
    assert format_instant(datetime(987, 1, 2, tzinfo=UTC)) == "0987-01-02T00:00:00.000Z"  # FHIR: four-digit years
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", format_instant(datetime.now(UTC)))
