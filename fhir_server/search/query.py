"""Query parameters to a ``SearchPlan`` (FHIR R4 search.html): names, chains, ``_has``, controls.

``parse_search`` is the only way a query string becomes a plan, for type searches (``Patient?...``),
system searches (``?_type=...``) and the criteria of conditional interactions, so every request
gets the same validation: a bad value, modifier or control parameter is a 400 naming the
parameter; an unknown parameter is reported in ``plan.ignored`` (or a 400 when ``strict``, as for
``Prefer: handling=strict`` and conditional interactions, where ignoring a criterion could update or
delete the wrong resources).

Plan conventions the storage relies on:

- ``Criterion.resource_type`` is the searched type, or ``"Resource"`` in a system search over
  several types (then only parameters that all those types share are accepted);
- a chain without a type modifier (``subject.name``) goes to every target type that has the rest of
  the chain: a ``ChainCriterion`` when one does, else a ``ChainAnyCriterion`` over all of them
  (search.html: "the server SHALL search across all of them");
- ``ref:identifier`` and ``identifier:of-type`` become criteria on derived index names (see
  ``search.matches``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import parse_qsl

from fhir_server.errors import bad_request
from fhir_server.search.matches import build_criterion
from fhir_server.search.plan import (
    AnyCriterion,
    ChainAnyCriterion,
    ChainCriterion,
    Criterion,
    HasCriterion,
    Include,
    SearchPlan,
    SortKey,
)
from fhir_server.search.registry import SearchParamDef, SearchRegistry

SYSTEM_TYPE = "Resource"
_IGNORED = frozenset({"_format", "_pretty"})  # the API layer's business, not the plan's
_SUMMARY = frozenset({"true", "text", "data", "count", "false"})
_TOTAL = frozenset({"none", "estimate", "accurate"})
_ELEMENT = re.compile(r"(?:[A-Z][A-Za-z]*\.)?[a-z][A-Za-z0-9]*(?:\[x\])?")
_CONDITIONAL_LIMIT = 2  # a conditional interaction only needs to know: none, one or several


class _Unknown(Exception):
    """A parameter the server does not know (or does not support) for the searched types."""


def parse_search(resource_type: str | None, params: Sequence[tuple[str, str]], registry: SearchRegistry, *,
                 strict: bool, default_count: int, max_count: int, base_url: str | None = None) -> SearchPlan:
    """The plan for decoded query ``params`` (in order) of a type search, or a system search when
    ``resource_type`` is None. ``base_url`` (this server's) turns absolute references to local
    resources into ``Type/id`` so they match relative references."""
    parser = _Parser(registry, base_url)
    types = parser.search_types(resource_type, params)
    plan = SearchPlan(resource_types=types, count=min(default_count, max_count))
    for name, value in params:
        if name in _IGNORED or (name == "_type" and resource_type is None):
            continue
        if parser.control(plan, name, value, max_count):
            continue
        try:
            criterion = parser.criterion(types, name, value)
        except _Unknown as unknown:
            if strict:
                raise bad_request(str(unknown), code="not-supported", expression=(name,)) from None
            plan.ignored.append(name)
            continue
        if criterion is not None:
            plan.criteria.append(criterion)
    return plan


def parse_conditional(resource_type: str, query_string: str, registry: SearchRegistry) -> SearchPlan:
    """The criteria of a conditional create/update/patch/delete (``If-None-Exist`` or the URL query).
    Unknown parameters are errors, and at least one criterion is required: a conditional delete
    with no criteria must not match everything."""
    params = parse_qsl(query_string.lstrip("?"), keep_blank_values=True)
    plan = parse_search(resource_type, params, registry, strict=True, default_count=_CONDITIONAL_LIMIT,
                        max_count=_CONDITIONAL_LIMIT)
    if not plan.criteria:
        raise bad_request(f"A conditional interaction needs at least one search criterion: {query_string!r}")
    return plan


class _Parser:
    def __init__(self, registry: SearchRegistry, base_url: str | None) -> None:
        self.registry = registry
        self.base_url = base_url

    # --- searched types and control parameters -------------------------------------------------

    def search_types(self, resource_type: str | None, params: Sequence[tuple[str, str]]) -> tuple[str, ...]:
        if resource_type is not None:
            if not self.registry.is_resource_type(resource_type):
                raise bad_request(f"Unknown resource type {resource_type!r}", code="not-supported")
            return (resource_type,)
        named = [t.strip() for name, value in params if name == "_type" for t in value.split(",") if t.strip()]
        unknown = [t for t in named if not self.registry.is_resource_type(t)]
        if unknown:
            raise bad_request(f"Search parameter '_type': unknown resource type(s) {', '.join(unknown)}",
                              expression=("_type",))
        return tuple(dict.fromkeys(named)) or self.registry.resource_types()

    def control(self, plan: SearchPlan, name: str, value: str, max_count: int) -> bool:
        """Apply a control parameter (``_count``, ``_sort``, ...); False if ``name`` is not one."""
        base, _, modifier = name.partition(":")
        if base in ("_include", "_revinclude"):
            if modifier not in ("", "iterate", "recurse"):
                raise bad_request(f"Search parameter '{name}': unknown modifier :{modifier}", expression=(name,))
            plan.includes += [self._include(name, v, base == "_revinclude", bool(modifier))
                              for v in value.split(",") if v]
            return True
        if base not in ("_count", "_cursor", "_sort", "_total", "_summary", "_elements"):
            return False
        if modifier:
            raise bad_request(f"Search parameter '{name}' takes no modifier", expression=(name,))
        if base == "_count":
            plan.count = min(_non_negative(name, value), max_count)
        elif base == "_cursor":
            plan.cursor = value
        elif base == "_sort":
            plan.sort = [self._sort_key(plan.resource_types, key) for key in value.split(",") if key]
        elif base == "_total":
            plan.total = _one_of(name, value, _TOTAL)
        elif base == "_summary":
            plan.summary = parse_summary(value)
        else:
            plan.elements = parse_elements(value, self.registry)
        check_subsetting(plan.summary, plan.elements)
        return True

    def _sort_key(self, types: tuple[str, ...], key: str) -> SortKey:
        descending = key.startswith("-")
        code = key[1:] if descending else key
        definition = self._shared_definition(types, code)
        if definition is None or definition.type == "composite":
            raise bad_request(f"Search parameter '_sort': cannot sort by {code!r}", expression=("_sort",))
        return SortKey(code, definition.type, descending)

    def _include(self, name: str, value: str, reverse: bool, iterate: bool) -> Include:
        if value == "*":
            return Include("*", "*", reverse=reverse, iterate=iterate)
        parts = value.split(":")
        if len(parts) not in (2, 3):
            raise bad_request(f"Search parameter '{name}': {value!r} is not Type:param[:TargetType]",
                              expression=(name,))
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if not self.registry.is_resource_type(source):
            raise bad_request(f"Search parameter '{name}': unknown resource type {source!r}", expression=(name,))
        if code != "*":
            definition = self.registry.get(source, code)
            if definition is None or definition.type != "reference":
                raise bad_request(f"Search parameter '{name}': {source} has no reference parameter {code!r}",
                                  expression=(name,))
            if target is not None and definition.targets and target not in definition.targets:
                raise bad_request(f"Search parameter '{name}': {target} is not a target of {source}:{code}",
                                  expression=(name,))
        if target is not None and not self.registry.is_resource_type(target):
            raise bad_request(f"Search parameter '{name}': unknown resource type {target!r}", expression=(name,))
        return Include(source, code, target, reverse=reverse, iterate=iterate)

    # --- criteria ------------------------------------------------------------------------------

    def criterion(self, types: tuple[str, ...], name: str, value: str) -> AnyCriterion | None:
        """The criterion for ``name=value`` against ``types``; None for an empty value."""
        subject_type = types[0] if len(types) == 1 else SYSTEM_TYPE
        if name.startswith("_has:"):
            return self._has(subject_type, name, value)
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        definition = self._shared_definition(types, code)
        if definition is None:
            known = self.registry.is_unsupported(types[0], code) if len(types) == 1 else False
            raise _Unknown(f"Search parameter '{code}' is {'not supported' if known else 'unknown'} "
                           f"for {' / '.join(types) if len(types) < 4 else 'these types'}")
        if dot:
            return self._chain(subject_type, name, definition, modifier, rest, value)
        return build_criterion(subject_type, name, definition, modifier, value, registry=self.registry,
                               base_url=self.base_url)

    def _chain(self, subject_type: str, name: str, definition: SearchParamDef, modifier: str, rest: str,
               value: str) -> Criterion | ChainCriterion | ChainAnyCriterion | None:
        if definition.type != "reference":
            raise bad_request(f"Search parameter '{name}': only reference parameters can be chained",
                              expression=(name,))
        if modifier:
            if not self.registry.is_resource_type(modifier) or (
                    definition.targets and modifier not in definition.targets):
                raise bad_request(f"Search parameter '{name}': :{modifier} is not a target type of "
                                  f"{definition.code}", expression=(name,))
            targets = [modifier]
        else:
            next_code = rest.split(".", 1)[0].split(":", 1)[0]
            targets = [t for t in definition.targets if self.registry.get(t, next_code) is not None]
            if not targets:
                raise _Unknown(f"Search parameter '{name}': no target of {definition.code} has a "
                               f"parameter {next_code!r}")
        inners = self._chained(targets, rest, value)
        if inners is None:
            return None
        if self.registry.embeds(subject_type, definition.code):
            # the container indexes its inline resource's values under one name, whatever its type
            return _embedded(subject_type, name, definition.code, inners[0][1])
        chains = tuple(ChainCriterion(subject_type, definition.code, target, inner) for target, inner in inners)
        return chains[0] if len(chains) == 1 else ChainAnyCriterion(subject_type, definition.code, chains)

    def _chained(self, targets: Sequence[str], rest: str, value: str
                 ) -> list[tuple[str, AnyCriterion]] | None:
        """The rest of a chain (``rest=value``) on each target type that has it, in order; None for
        an empty value. A target on which the rest of the chain is unknown is left out; when that
        leaves none, the first target's reason is raised."""
        found: list[tuple[str, AnyCriterion]] = []
        unknown: _Unknown | None = None
        for target in targets:
            try:
                inner = self.criterion((target,), rest, value)
            except _Unknown as error:
                unknown = unknown or error
                continue
            if inner is None:
                return None
            found.append((target, inner))
        if not found:
            assert unknown is not None
            raise unknown
        return found

    def _has(self, subject_type: str, name: str, value: str) -> HasCriterion | None:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts):
            raise bad_request(f"Search parameter '{name}': expected _has:Type:reference:parameter",
                              expression=(name,))
        _, source_type, source_param, rest = parts
        if not self.registry.is_resource_type(source_type):
            raise bad_request(f"Search parameter '{name}': unknown resource type {source_type!r}",
                              expression=(name,))
        definition = self.registry.get(source_type, source_param)
        if definition is None or definition.type != "reference":
            raise bad_request(f"Search parameter '{name}': {source_type} has no reference parameter "
                              f"{source_param!r}", expression=(name,))
        if subject_type != SYSTEM_TYPE and definition.targets and subject_type not in definition.targets:
            raise bad_request(f"Search parameter '{name}': {source_type}.{source_param} cannot refer to "
                              f"{subject_type}", expression=(name,))
        inner = self.criterion((source_type,), rest, value)
        return None if inner is None else HasCriterion(subject_type, source_type, source_param, inner)

    def _shared_definition(self, types: tuple[str, ...], code: str) -> SearchParamDef | None:
        """The definition of ``code`` when every searched type has it with the same type."""
        definitions = [self.registry.get(t, code) for t in types]
        first = definitions[0]
        if first is None or any(d is None or d.type != first.type for d in definitions):
            return None
        return first


def _embedded(subject_type: str, name: str, code: str, inner: AnyCriterion
              ) -> Criterion | ChainCriterion | ChainAnyCriterion:
    """A chain through an inline-resource parameter (``Bundle?composition.subject=...``) is a criterion
    on the values the container indexes for the inline resource (``composition.subject``)."""
    if isinstance(inner, HasCriterion):
        raise bad_request(f"Search parameter '{name}': _has cannot follow {code}", code="not-supported",
                          expression=(name,))
    if isinstance(inner, ChainAnyCriterion):
        alternatives = tuple(replace(a, resource_type=subject_type, param=f"{code}.{a.param}")
                             for a in inner.alternatives)
        return replace(inner, resource_type=subject_type, param=f"{code}.{inner.param}", alternatives=alternatives)
    return replace(inner, resource_type=subject_type, param=f"{code}.{inner.param}")


def parse_summary(value: str) -> str | None:
    """A ``_summary`` value; None for ``false``."""
    summary = _one_of("_summary", value, _SUMMARY)
    return None if summary == "false" else summary


def check_subsetting(summary: str | None, elements: tuple[str, ...]) -> None:
    """``_elements`` goes with no ``_summary`` but ``count`` (which returns no resources anyway)."""
    if elements and summary not in (None, "count"):
        raise bad_request("_summary and _elements cannot be combined: use one of them",
                          expression=("_summary", "_elements"))


def parse_elements(value: str, registry: SearchRegistry) -> tuple[str, ...]:
    """The names of an ``_elements`` value: top-level elements, optionally qualified by a resource
    type (``Patient.name``)."""
    elements = tuple(e.strip() for e in value.split(",") if e.strip())
    bad = [e for e in elements if not _ELEMENT.fullmatch(e)
           or ("." in e and not registry.is_resource_type(e.split(".", 1)[0]))]
    if bad:
        raise bad_request(f"Search parameter '_elements': invalid element name(s) {', '.join(bad)} (top-level "
                          "elements, optionally qualified by a resource type: name, Patient.name)",
                          expression=("_elements",))
    return elements


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit() or not value.isascii():
        raise bad_request(f"Search parameter '{name}': {value!r} is not a non-negative integer", expression=(name,))
    return int(value)


def _one_of(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise bad_request(f"Search parameter '{name}': {value!r} is not one of {', '.join(sorted(allowed))}",
                          expression=(name,))
    return value
