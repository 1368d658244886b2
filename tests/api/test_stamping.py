"""The server's ids and instants, as clients see them in ``id`` and ``meta.lastUpdated``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

from fhir_server.service.stamping import format_instant, new_id


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


def test_instants_are_utc_with_milliseconds() -> None:
    assert format_instant(datetime(2024, 3, 1, 10, 0, 0, 123999, tzinfo=UTC)) == "2024-03-01T10:00:00.123Z"
    assert format_instant(datetime(2024, 3, 1, 0, 0, tzinfo=UTC)) == "2024-03-01T00:00:00.000Z"
    ist = timezone(timedelta(hours=5, minutes=30))
    assert format_instant(datetime(2024, 3, 1, 3, 0, 0, 5000, tzinfo=ist)) == "2024-02-29T21:30:00.005Z"
    assert format_instant(datetime(987, 1, 2, tzinfo=UTC)) == "0987-01-02T00:00:00.000Z"  # FHIR: four-digit years
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", format_instant(datetime.now(UTC)))
