"""Rewriting references inside a resource, at any depth (extensions and contained resources too).

Used when a bundle's ``urn:uuid:`` / ``urn:oid:`` fullUrls are replaced by the ``Type/id`` the
server assigned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def rewrite_references(node: Any, replacements: Mapping[str, str]) -> Any:
    """A copy of ``node`` with every ``reference`` value found in ``replacements`` replaced."""
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in replacements:
                result[key] = replacements[value]
            else:
                result[key] = rewrite_references(value, replacements)
        return result
    if isinstance(node, list):
        return [rewrite_references(item, replacements) for item in node]
    return node
