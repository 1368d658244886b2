"""Bundle assembly: history and searchset Bundles built around the stored JSON bytes.

Stored resources are embedded as ``orjson.Fragment`` so a Bundle of N resources costs one
serialization of the envelope, never a parse and re-dump of each resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.service.stamping import format_instant, new_id, now_ms
from fhir_server.storage.base import StoredResource


def resource_url(base_url: str, stored: StoredResource) -> str:
    return f"{base_url}/{stored.resource_type}/{stored.id}"


def version_url(base_url: str, stored: StoredResource) -> str:
    return f"{resource_url(base_url, stored)}/_history/{stored.version}"


def etag(stored: StoredResource) -> str:
    return f'W/"{stored.version}"'


def not_modified(stored: StoredResource, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """A conditional read's answer is 304: ``If-None-Match`` names the current version (or ``*``), or,
    without it, the resource has not changed since ``If-Modified-Since``."""
    if if_none_match is not None:
        wanted = {t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")}
        return "*" in wanted or str(stored.version) in wanted
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            return False
        return stored.last_updated.replace(microsecond=0) <= since
    return False


def page_url(base_url: str, path: str, params: Sequence[tuple[str, str]]) -> str:
    query = urlencode(list(params))
    return f"{base_url}/{path}".rstrip("/") + (f"?{query}" if query else "")


def bundle(bundle_type: str, entries: list[dict[str, Any]], links: list[tuple[str, str]],
           total: int | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": format_instant(now_ms())},
        "type": bundle_type,
    }
    if total is not None:
        result["total"] = total
    if links:
        result["link"] = [{"relation": relation, "url": url} for relation, url in links]
    result["entry"] = entries
    return result


def history_entry(base_url: str, stored: StoredResource) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": resource_url(base_url, stored)}
    if stored.deleted:
        method, url, status = "DELETE", f"{stored.resource_type}/{stored.id}", "204 No Content"
    elif stored.version == 1:
        method, url, status = "POST", stored.resource_type, "201 Created"
        entry["resource"] = orjson.Fragment(stored.body)
    else:
        method, url, status = "PUT", f"{stored.resource_type}/{stored.id}", "200 OK"
        entry["resource"] = orjson.Fragment(stored.body)
    entry["request"] = {"method": method, "url": url}
    entry["response"] = {
        "status": status,
        "etag": etag(stored),
        "lastModified": format_instant(stored.last_updated),
    }
    return entry


def search_entry(base_url: str, stored: StoredResource, mode: str, body: bytes | None = None) -> dict[str, Any]:
    return {
        "fullUrl": resource_url(base_url, stored),
        "resource": orjson.Fragment(body if body is not None else stored.body),
        "search": {"mode": mode},
    }
