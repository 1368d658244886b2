"""Rewriting references inside a resource, at any depth (extensions and contained resources too).

Used when a bundle's ``urn:uuid:`` / ``urn:oid:`` fullUrls are replaced by the ``Type/id`` the
server assigned.

Two forms: ``rewrite_references`` walks parsed JSON; ``rewrite_json`` and ``references_in`` work on
compact JSON text (as ``orjson.dumps`` writes it), which is ten times faster than walking the dicts
in Python. They match the same thing: a ``"reference":"..."`` member whose value is a string. In
JSON text every quote inside a string is escaped, so ``"reference":"`` can only be that member's
key and the start of its string value, never part of another string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')


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


def _text(escaped: bytes) -> str:
    return orjson.loads(b'"' + escaped + b'"') if b"\\" in escaped else escaped.decode()


def references_in(raw: bytes) -> list[str]:
    """Every ``reference`` string value in compact JSON text, in order."""
    return [_text(m) for m in _REFERENCE.findall(raw)]


def rewrite_json(raw: bytes, replacements: Mapping[str, str]) -> bytes:
    """``raw`` (compact JSON text) with every ``reference`` value found in ``replacements`` replaced;
    ``raw`` itself when none is."""
    changed = False

    def replace(match: re.Match[bytes]) -> bytes:
        nonlocal changed
        new = replacements.get(_text(match.group(1)))
        if new is None:
            return match.group(0)
        changed = True
        return b'"reference":' + orjson.dumps(new)

    result = _REFERENCE.sub(replace, raw)
    return result if changed else raw
