"""The search parameters this server supports, per resource type, from the official R4 definitions.

The data is generated (``scripts/generate_search_params.py``) into ``search_parameters_r4.json`` and
read once per process: parsing ~1,700 SearchParameter resources at start-up would be slow and would
make the server depend on a package download. Parameters the generator could not compile are left
out of every lookup and listed by ``unsupported()``, so the CapabilityStatement never claims them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

from fhir_server.search.fhirpath import ElementTypes, branches, compile_path

DATA_FILE = "search_parameters_r4.json"


@dataclass(frozen=True, slots=True)
class ComponentDef:
    """One part of a composite parameter; ``expression`` is relative to the composite's element."""

    code: str
    type: str
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParamDef:
    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri
    expression: str  # FHIRPath, only the branches that apply to the resource type it was looked up for
    targets: tuple[str, ...] = ()  # reference target types
    components: tuple[ComponentDef, ...] = ()


@dataclass(frozen=True, slots=True)
class UnsupportedParam:
    base: str  # "Resource" for parameters of every type
    code: str
    reason: str


class SearchRegistry:
    """Immutable lookup of parameter definitions; ``Resource`` parameters apply to every type."""

    def __init__(self, params: Mapping[str, Mapping[str, SearchParamDef]], resource_types: tuple[str, ...],
                 element_types: ElementTypes, unsupported: tuple[UnsupportedParam, ...] = ()) -> None:
        common = params.get("Resource", {})
        self._by_type = MappingProxyType({
            rt: MappingProxyType({**common, **params.get(rt, {})}) for rt in resource_types
        })
        self._resource_types = resource_types
        self.element_types: ElementTypes = MappingProxyType(dict(element_types))  # for compiling expressions
        self._unsupported = unsupported
        self._embedding: dict[tuple[str, str], bool] = {}
        self._unions: dict[str, Mapping[str, tuple[str, ...]]] = {}

    @classmethod
    def load(cls) -> SearchRegistry:
        """The registry of the packaged R4 definitions (built once per process)."""
        return _packaged_registry()

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SearchRegistry:
        """Build from the generator's compact JSON structure (documented in the generator)."""
        resource_types = tuple(data["t"])
        params = {
            base: {row[0]: _param_def(row, resource_types) for row in rows} for base, rows in data["p"].items()
        }
        unsupported = tuple(UnsupportedParam(*row) for row in data["u"])
        return cls(params, resource_types, data["e"], unsupported)

    def get(self, resource_type: str, code: str) -> SearchParamDef | None:
        params = self._by_type.get(resource_type)
        return None if params is None else params.get(code)

    def for_type(self, resource_type: str) -> Mapping[str, SearchParamDef]:
        """Every supported parameter of ``resource_type`` by code (empty for an unknown type)."""
        return self._by_type.get(resource_type, MappingProxyType({}))

    def embeds(self, resource_type: str, code: str) -> bool:
        """Whether reference parameter ``code`` yields whole inline resources rather than references
        (``Bundle.composition`` is the first entry's Composition). Such a resource is indexed with the
        container (see ``search.extract``), so chains through the parameter search it there."""
        key = (resource_type, code)
        if key not in self._embedding:
            definition = self.get(resource_type, code)
            self._embedding[key] = definition is not None and definition.type == "reference" and "Resource" in (
                compile_path(definition.expression, resource_type, self.element_types).types)
        return self._embedding[key]

    def unions(self, resource_type: str) -> Mapping[str, tuple[str, ...]]:
        """The parameters of ``resource_type`` whose expression is the union (``|``) of other
        parameters' expressions, each with those parameters: of the same type (composites also with
        the same components), whose terms together are exactly its terms. In R4 these are the
        Observation ``combo-*`` parameters (``combo-code`` is ``code`` and ``component-code``). A
        resource has the same values for such a parameter as for its parts together, so a store may
        keep only the parts'. Reference parameters are left out: the resource types a reference
        may point at are part of their meaning too."""
        found = self._unions.get(resource_type)
        if found is None:
            params = self.for_type(resource_type)
            terms = {code: _union_terms(d.expression) for code, d in params.items()}
            unions: dict[str, tuple[str, ...]] = {}
            for code, definition in params.items():
                if definition.type == "reference" or len(terms[code]) < 2:
                    continue
                parts = tuple(other for other, d in params.items()
                              if other != code and d.type == definition.type and terms[other] <= terms[code]
                              and _same_components(d, definition))
                if parts and frozenset().union(*(terms[p] for p in parts)) == terms[code]:
                    unions[code] = parts
            found = self._unions[resource_type] = MappingProxyType(unions)
        return found

    def resource_types(self) -> tuple[str, ...]:
        return self._resource_types

    def is_resource_type(self, name: str) -> bool:
        return name in self._by_type

    def unsupported(self) -> tuple[UnsupportedParam, ...]:
        return self._unsupported

    def is_unsupported(self, resource_type: str, code: str) -> bool:
        return any(u.code == code and u.base in (resource_type, "Resource") for u in self._unsupported)


def _param_def(row: list[Any], resource_types: tuple[str, ...]) -> SearchParamDef:
    targets = tuple(row[3]) if len(row) > 3 else ()
    components = tuple(ComponentDef(*c) for c in row[4]) if len(row) > 4 else ()
    return SearchParamDef(row[0], row[1], row[2], resource_types if targets == ("*",) else targets, components)


def _union_terms(expression: str) -> frozenset[str]:
    """The top-level ``|`` branches of an expression, each without enclosing parentheses:
    ``(A.value as Quantity) | A.x`` gives ``A.value as Quantity`` and ``A.x``."""
    return frozenset(_unwrapped(branch) for branch in branches(expression))


def _unwrapped(term: str) -> str:
    while term.startswith("(") and term.endswith(")") and _balanced(term[1:-1]):
        term = term[1:-1].strip()
    return term


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += (char == "(") - (char == ")")
        if depth < 0:
            return False
    return depth == 0


def _same_components(a: SearchParamDef, b: SearchParamDef) -> bool:
    return [(c.type, c.expression) for c in a.components] == [(c.type, c.expression) for c in b.components]


@functools.cache
def _packaged_registry() -> SearchRegistry:
    return SearchRegistry.from_data(json.loads(resources.files(__package__).joinpath(DATA_FILE).read_bytes()))
