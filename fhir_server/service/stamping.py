"""The server's part of every stored resource: logical id, ``meta.versionId``, ``meta.lastUpdated``."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime
from time import time as _clock
from typing import Any

import orjson

from fhir_server.errors import bad_request

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_VERSION = re.compile(r"[0-9]{1,18}")


def now_ms() -> datetime:
    """Now, at the millisecond precision every backend stores."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_instant(moment: datetime) -> str:
    """``2024-03-01T10:00:00.123Z``: milliseconds, UTC (``isoformat`` takes half ``strftime``'s time)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def version_number(text: str) -> int | None:
    """A version id as the integer the stores keep, or None when ``text`` cannot be one."""
    return int(text) if _VERSION.fullmatch(text) else None


def new_id() -> str:
    """A random (version 4) UUID, formatted without a ``uuid.UUID`` object (half the time of
    ``str(uuid.uuid4())``): for ids that are not stored keys, such as a response Bundle's."""
    return _uuid_text(os.urandom(16), 4)


_PREFIX_KEY = os.urandom(16)  # this process's; nothing outside it ever needs it
_prefix: tuple[int, bytes] = (-1, b"")  # (second, its prefix), the last one computed


def new_resource_id() -> str:
    """The logical id of a created resource: a version-8 UUID whose first 48 bits stand for the
    current second and whose other 74 bits are random.

    Why not ``new_id``: every B-tree keyed by id (the current version, the history, the references
    to it) then receives the ids of one second side by side, so a transaction bundle's inserts land
    on a few neighbouring pages instead of one random page per resource per index. Measured by
    ingesting the Synthea copies in-process up to 100,000 resources, side by side with random ids:
    COMMIT took about 30% less time and the write transaction was held 10-18% shorter.

    The 48 bits are a keyed hash of the second, with a key made at random by each process and never
    stored, so an id does not tell when it was made, as a time-ordered UUIDv7 would; it only shows
    which ids one process made in the same second."""
    global _prefix
    second = int(_clock())
    cached_second, prefix = _prefix
    if second != cached_second:
        prefix = hashlib.blake2b(second.to_bytes(8, "big"), key=_PREFIX_KEY, digest_size=6).digest()
        _prefix = (second, prefix)
    return _uuid_text(prefix + os.urandom(10), 8)  # version 8: a layout of our own (RFC 9562)


def _uuid_text(bits: bytes, version: int) -> str:
    """16 bytes as a hyphenated lower-case UUID of ``version`` and the RFC 4122 variant."""
    raw = bytearray(bits)
    raw[6] = raw[6] & 0x0F | version << 4
    raw[8] = raw[8] & 0x3F | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def check_id(id: str) -> str:
    if not _ID.fullmatch(id):
        raise bad_request(f"invalid resource id {id!r}: 1-64 characters of A-Z, a-z, 0-9, '-' and '.'")
    return id


def stamp(resource: dict[str, Any], id: str, version: int, last_updated: datetime) -> dict[str, Any]:
    """A copy of ``resource`` with the server's id and meta, ``resourceType``, ``id`` and ``meta`` first."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(last_updated)
    stamped = {"resourceType": resource["resourceType"], "id": id, "meta": meta}
    stamped.update((k, v) for k, v in resource.items() if k not in stamped)
    return stamped


def dump(resource: dict[str, Any]) -> bytes:
    return orjson.dumps(resource)
