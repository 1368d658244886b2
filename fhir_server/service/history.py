"""The history interaction for an instance, a type, or the whole system, with keyset paging.

Pages are cut at a (lastUpdated, version key) cursor rather than an offset, so writes made while a
client walks the pages only add entries before the first page, never shift later ones.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from consent.policy import AccessPolicy
from fhir_server.errors import FhirError, bad_request
from fhir_server.search.normalize import date_range
from fhir_server.service.bundles import bundle, history_entry, page_url
from fhir_server.service.stamping import version_number
from fhir_server.storage.base import HistoryQuery, Storage, StoredResource

_CURSOR = "_cursor"
_IGNORED = {"_format", "_pretty"}


def _instant_ms(value: str, name: str) -> tuple[int, int]:
    bounds = date_range(value)
    if bounds is None:
        raise bad_request(f"{name}: {value!r} is not a valid date or instant")
    return bounds


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _encode_cursor(cursor: tuple[datetime, str]) -> str:
    raw = f"{int(cursor[0].timestamp() * 1000)}|{cursor[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        ms, key = raw.split("|", 1)
        _type, _id, version = key.split("/")
        if version_number(version) is None:
            raise ValueError(version)
        return _from_ms(int(ms)), key
    except (ValueError, UnicodeDecodeError, OverflowError, OSError):
        raise bad_request(f"{_CURSOR}: not a page cursor issued by this server") from None


class HistoryService:
    def __init__(self, storage: Storage, default_count: int, max_count: int) -> None:
        self.storage = storage
        self.default_count = default_count
        self.max_count = max_count

    def history(self, policy: AccessPolicy, base_url: str, resource_type: str | None, id: str | None,
                params: Sequence[tuple[str, str]]) -> dict[str, Any]:
        if resource_type is not None:
            policy.require_read(resource_type)
        elif not policy.can_read("*"):
            raise FhirError(403, "forbidden", "system history is not permitted")
        count, since, at, before = self.default_count, None, None, None
        for name, value in params:
            if name == "_count":
                number = version_number(value)
                if number is None:
                    raise bad_request(f"_count must be a non-negative integer, not {value!r}")
                count = min(number, self.max_count)
            elif name == "_since":
                since = _from_ms(_instant_ms(value, "_since")[0])
            elif name == "_at":
                low, high = _instant_ms(value, "_at")
                at = (_from_ms(low), _from_ms(high))
            elif name == _CURSOR:
                before = _decode_cursor(value)
            elif name not in _IGNORED:
                raise bad_request(f"unknown history parameter {name!r}: use _count, _since or _at")
        if resource_type is not None and id is not None and self.storage.read(resource_type, id) is None:
            raise FhirError(404, "not-found", f"{resource_type}/{id} is not known")
        page = self.storage.history(HistoryQuery(resource_type, id, since, at, count, before))
        path = "/".join(p for p in (resource_type, id, "_history") if p)
        kept = [(n, v) for n, v in params if n != _CURSOR]
        links = [("self", page_url(base_url, path, params)), ("first", page_url(base_url, path, kept))]
        if page.next_cursor is not None and count > 0:
            links.append(("next", page_url(base_url, path, [*kept, (_CURSOR, _encode_cursor(page.next_cursor))])))
        shown, total = page.entries, page.total
        if policy.restricted:
            # a history lists only the versions the caller may see (an instance's too: another facility
            # may have recreated a deleted id); a page may come out short, and a type or system
            # history's total would count what the caller may not see
            shown = [policy.shown(s) for s in shown if self._visible(policy, s)]
            if id is not None and page.entries and not shown:
                raise FhirError(403, "forbidden", f"{resource_type}/{id} is outside what you may read; "
                                                  f"{policy.refusal}")
            if (id is None and (resource_type is None or resource_type in policy.guarded)) \
                    or len(shown) != len(page.entries):
                total = None
        policy.disclosed("history", path, shown)
        entries = [history_entry(base_url, stored) for stored in shown]
        return bundle("history", entries, links, total)

    def _visible(self, policy: AccessPolicy, stored: StoredResource) -> bool:
        """A deletion has no content of its own: it is visible to whoever could see what it deleted."""
        if not stored.deleted or stored.resource_type not in policy.guarded:
            return policy.permits(stored) or stored.deleted
        before = self.storage.read_version(stored.resource_type, stored.id, stored.version - 1)
        return before is not None and policy.permits(before)
