"""PATCH bodies: JSON Patch (RFC 6902) by content type, otherwise a JSON merge patch (RFC 7396) as
fhirpy sends it. The result is validated by the caller before it is stored."""

from __future__ import annotations

from typing import Any

import jsonpatch
import orjson

from fhir_server.errors import FhirError, bad_request

JSON_PATCH = "application/json-patch+json"


def apply_patch(current_body: bytes, content_type: str, patch: Any) -> dict[str, Any]:
    current = orjson.loads(current_body)
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("a JSON Patch body must be an array of operations")
        try:
            result = jsonpatch.JsonPatch(patch).apply(current)
        except jsonpatch.JsonPatchTestFailed as error:
            raise FhirError(422, "processing", f"JSON Patch test failed: {error}") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError,
                IndexError, ValueError) as error:
            raise FhirError(422, "processing", f"the JSON Patch cannot be applied: {error}") from None
    else:
        if not isinstance(patch, dict):
            raise bad_request("a merge patch body must be a JSON object")
        result = merge_patch(current, patch)
    if not isinstance(result, dict):
        raise FhirError(422, "processing", "the patch did not leave a resource")
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge recursively, ``null`` removes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
