"""``_summary`` and ``_elements``: the parts of a resource a client asked for (search.html, R4).

- ``_summary=true``: the elements the R4 definitions mark ``isSummary`` (inside backbone elements
  too: ``Observation.component`` keeps ``code`` and ``value[x]``), plus mandatory top-level elements;
- ``_summary=text``: ``id``, ``meta``, ``text`` and the mandatory top-level elements;
- ``_summary=data``: everything but ``text``;
- ``_elements=a,b``: those top-level elements plus ``id``, ``meta`` and the mandatory ones. A name
  may be qualified by a resource type (``Patient.name``): it then applies to that type only, and a
  type that none of the names applies to is returned whole. A choice element matches by its stem
  (``value`` or ``value[x]`` keeps ``valueQuantity``).

Data types are kept whole. Every resource that was subsetted carries the ``SUBSETTED`` tag. The
element tables are generated from the official StructureDefinitions
(``scripts/generate_resource_data.py``); a resource type they do not describe (the R4B additions)
is returned whole under ``_summary=true``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

DATA_FILE = "elements_r4.json"
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "Resource encoded in summary mode"}
SUMMARY_MODES = frozenset({"true", "text", "data"})
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@dataclass(frozen=True, slots=True)
class _Level:
    """The elements kept at one level: by name, or by the stem of a choice element; the value is the
    level below (None: keep the element whole)."""

    names: Mapping[str, _Level | None]
    stems: tuple[tuple[str, _Level | None], ...] = ()

    def find(self, key: str) -> tuple[bool, _Level | None]:
        name = key[1:] if key.startswith("_") else key  # a primitive's extension travels with it
        if name in self.names:
            return True, self.names[name]
        for stem, below in self.stems:
            if name.startswith(stem) and len(name) > len(stem) and name[len(stem)].isupper():
                return True, below
        return False, None

    def apply(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.apply(item) for item in value]
        if not isinstance(value, dict):
            return value
        kept = {}
        for key, item in value.items():
            found, below = self.find(key)
            if found:
                kept[key] = item if below is None else below.apply(item)
        return kept


def _level(names: Mapping[str, Any]) -> _Level:
    plain: dict[str, _Level | None] = {}
    stems: list[tuple[str, _Level | None]] = []
    for name, spec in names.items():
        below = _level(spec) if isinstance(spec, dict) else None
        if name.endswith("[x]"):
            stems.append((name[:-3], below))
        else:
            plain[name] = below
    return _Level(plain, tuple(stems))


class Subsetter:
    """Applies ``_summary`` / ``_elements`` to stored resource bodies."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        types: Mapping[str, Any] = data["t"]
        self._mandatory = {name: tuple(spec["m"]) for name, spec in types.items()}
        self._choices = {name: frozenset(spec["x"]) for name, spec in types.items()}
        self._summary = {name: _level({**dict.fromkeys([*_ALWAYS, *spec["m"]], 1), **spec["s"]})
                         for name, spec in types.items()}

    @classmethod
    def load(cls) -> Subsetter:
        return _packaged()

    def subset(self, body: bytes, resource_type: str, summary: str | None, elements: Sequence[str]) -> bytes:
        """``body`` reduced as asked and tagged SUBSETTED; ``body`` itself when nothing applies."""
        if summary == "data":
            resource = orjson.loads(body)
            kept = {k: v for k, v in resource.items() if k != "text"}
        else:
            level = self._level(resource_type, summary, elements)
            if level is None:
                return body
            kept = level.apply(orjson.loads(body))
        meta = dict(kept.get("meta") or {})
        tags = meta.get("tag", [])
        if not any(t.get("system") == SUBSETTED["system"] and t.get("code") == SUBSETTED["code"] for t in tags):
            meta["tag"] = [*tags, SUBSETTED]
        kept["meta"] = meta
        return orjson.dumps(kept)

    def _level(self, resource_type: str, summary: str | None, elements: Sequence[str]) -> _Level | None:
        mandatory = self._mandatory.get(resource_type, ())
        if elements:
            names = _names_for(resource_type, elements)
            if names is None:
                return None
            choices = self._choices.get(resource_type, frozenset())
            requested = [f"{n}[x]" if n in choices else n for n in (n.removesuffix("[x]") for n in names)]
            return _level(dict.fromkeys([*_ALWAYS, *mandatory, *requested], 1))
        if summary == "true":
            return self._summary.get(resource_type)
        if summary == "text":
            return _level(dict.fromkeys([*_ALWAYS, "text", *mandatory], 1))
        return None


def _names_for(resource_type: str, elements: Sequence[str]) -> list[str] | None:
    """The element names that apply to ``resource_type``; None when only names qualified by other
    types were given (the resource is then returned whole)."""
    names = []
    for element in elements:
        qualifier, dot, name = element.rpartition(".")
        if not dot:
            names.append(element)
        elif qualifier == resource_type:
            names.append(name)
    return names or None


@functools.cache
def _packaged() -> Subsetter:
    from fhir_server import resources as package

    return Subsetter(json.loads(resources.files(package).joinpath(DATA_FILE).read_bytes()))
