"""The MongoDB document layout of index values, the indexes that serve it, and the compiler from a
SearchPlan to ``find()`` filters: the counterpart of ``sqlite_schema`` and
``sqlite_search``, with the same matching semantics.

A current-version document carries its index values as one array per parameter type, e.g.
``tok: [{p: "Observation.code", s: system, c: code, t: text, kc: "Observation.code|8480-6", ...}]``;
a composite value goes to ``cmp`` as ``{p, _0: part, _1: part, k}`` so the parts of one combination
stay in one element. A criterion becomes an ``$elemMatch`` on its array (exact semantics) plus a
"lead": a condition on one ``k*`` key that the ``$elemMatch`` implies. Keys are precomputed at write
time like HAPI's hash columns, ``"<Type.param>|<value>"`` with numbers in an order-preserving
encoding, so ONE single-field index serves the lead (equality, ``$in`` or range) on any engine.
That matters for SecantusDB, the test server: it ignores indexes for an ``$elemMatch``, for any filter
with a top-level ``$`` operator, and uses only the leading field of an index for the first filter
field it can serve. So filters never have a top-level ``$and``/``$or``/``$nor`` and start with a lead.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.search.index_values import (
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    ScalarValue,
    StringValue,
    TokenValue,
)
from fhir_server.search.plan import (
    AnyCriterion,
    ChainAnyCriterion,
    ChainCriterion,
    CompartmentCriterion,
    CompositeMatch,
    Criterion,
    HasCriterion,
    Include,
    Match,
    MissingMatch,
    Prefix,
    RangeMatch,
    ReferenceMatch,
    SortKey,
    StringMatch,
    TokenMatch,
    TokenTextMatch,
    UriMatch,
)
from fhir_server.search.ucum import CANONICAL_SUFFIX, CANONICAL_SYSTEM, UCUM_SYSTEM, conversion

Filter = dict[str, Any]
Fetch = Callable[[Filter, dict[str, int], int], list[dict[str, Any]]]
Lead = tuple[str, Any] | None  # (element field, condition on it) implied by a match

ARRAY_BY_TYPE = {
    "string": "str", "token": "tok", "reference": "ref", "date": "dt", "number": "num", "quantity": "qty",
    "uri": "uri", "composite": "cmp",
}
# Per array: element field -> its key field. The first key of an array exists in every element, so a
# range over "<Type.param>|" on it finds every resource with a value for the parameter.
KEY_FIELDS: dict[str, dict[str, str]] = {
    "str": {"n": "kn", "e": "ke"},
    "tok": {"c": "kc", "s": "ks", "t": "kt"},
    "ref": {"ti": "ki", "u": "ku"},
    "dt": {"lo": "klo", "hi": "khi"},
    "num": {"v": "kv"},
    "qty": {"v": "kv", "c": "kc"},
    "uri": {"u": "ku"},
    "cmp": {"_0.c": "k"},
}
RESOURCE_FIELDS = {"type": 1, "id": 1, "v": 1, "lu": 1, "d": 1, "body": 1}
DEFAULT_ORDER = [("ck", 1)]  # the creation key: immutable and unique, like SQLite's rowid order

# Chains and _has run their inner query first and continue with the ids it found: more than this
# many would make an unreasonably large ``$in``, so such a search is refused as too costly.
MAX_JOIN_IDS = 10_000

RESOURCE_INDEXES: dict[str, list[tuple[str, int]]] = {
    "type_created": [("type", 1), ("ck", 1)],
    "id_type": [("id", 1), ("type", 1)],
    "updated": [("lu", 1)],
    "ref_ti": [("ref.ti", 1)],
    **{f"{array}_{key}": [(f"{array}.{key}", 1)] for array, keys in KEY_FIELDS.items() for key in keys.values()},
}

_PREFIX_END = "\U0010ffff"
# per array: the element field an ascending and a descending sort use (SQLite's sort_expression)
_SORT_FIELDS = {"str": ("n", "n"), "tok": ("c", "c"), "ref": ("ti", "ti"), "dt": ("lo", "hi"), "num": ("v", "v"),
                "qty": ("v", "v"), "uri": ("u", "u")}


def _encode(field: str, value: Any) -> str:
    """A value as key text whose string order is the value order (fixed-width integers; floats by
    their IEEE bits with the sign handled)."""
    if value is None:
        return ""
    if field in ("lo", "hi"):
        return f"{value + 2**63:020d}"
    if field == "v":
        bits = int.from_bytes(struct.pack(">d", float(value)), "big")
        return f"{bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63:016x}"
    return str(value)


# --- layout ------------------------------------------------------------------------------------------

def _element(v: ScalarValue) -> tuple[str, dict[str, Any]]:
    if isinstance(v, StringValue):
        return "str", {"n": v.normalized, "e": v.exact}
    if isinstance(v, TokenValue):
        return "tok", {"s": v.system, "c": v.code, "t": v.text}
    if isinstance(v, ReferenceValue):
        return "ref", {"tt": v.target_type, "ti": v.target_id, "u": v.url}
    if isinstance(v, DateValue):
        return "dt", {"lo": v.low, "hi": v.high}
    if isinstance(v, NumberValue):
        return "num", {"v": v.value}
    if isinstance(v, QuantityValue):
        return "qty", {"v": v.value, "s": v.system, "c": v.code, "un": v.unit}
    return "uri", {"u": v.uri}


def _keyed(array: str, pkey: str, element: dict[str, Any]) -> dict[str, Any]:
    keys = {key: f"{pkey}|{_encode(field, element[field])}" for field, key in KEY_FIELDS[array].items()
            if field in element}
    return {"p": pkey, **element, **keys}


def index_fields(resource_type: str, values: Iterable[IndexValue]) -> dict[str, Any]:
    """The index arrays plus the sort keys of one resource: ``sa.<param>`` is the smallest value
    (what an ascending sort uses), ``sd.<param>`` the largest (descending), as in SQLite's MIN/MAX."""
    fields: dict[str, Any] = {name: [] for name in KEY_FIELDS}
    ascending: dict[str, Any] = {}
    descending: dict[str, Any] = {}
    for value in values:
        pkey = f"{resource_type}.{value.param}"
        if isinstance(value, CompositeValue):
            parts = {f"_{i}": _element(part)[1] for i, part in enumerate(value.parts)}
            fields["cmp"].append({"p": pkey, **parts, "k": f"{pkey}|{_encode('c', parts['_0'].get('c'))}"})
            continue
        array, element = _element(value)
        fields[array].append(_keyed(array, pkey, element))
        low, high = (element[name] for name in _SORT_FIELDS[array])
        if low is not None:
            ascending[value.param] = min(low, ascending.get(value.param, low))
            descending[value.param] = max(high, descending.get(value.param, high))
    fields["sa"] = ascending
    fields["sd"] = descending
    return fields


def canonical_quantities(elements: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``qty`` elements ``index_fields`` adds for the canonical units of the UCUM quantities among
    ``elements`` (stored ones), none when they have them already: for stores written before them."""
    elements = list(elements)
    if any(e.get("s") == CANONICAL_SYSTEM for e in elements):
        return []
    added: dict[tuple[str, float, str], dict[str, Any]] = {}
    for element in elements:
        converted = conversion(element["c"]) if element.get("s") == UCUM_SYSTEM and element.get("c") else None
        if converted is not None:
            pkey, value = element["p"] + CANONICAL_SUFFIX, converted.apply(element["v"])
            added.setdefault((pkey, value, converted.unit), _keyed(
                "qty", pkey, {"v": value, "s": CANONICAL_SYSTEM, "c": converted.unit, "un": None}))
    return list(added.values())


# --- search ------------------------------------------------------------------------------------------

def _one_or_in(values: Sequence[Any]) -> Any:
    return values[0] if len(values) == 1 else {"$in": list(values)}


def _prefix_range(value: str) -> Filter:
    return {"$gte": value, "$lt": value + _PREFIX_END}


def _common_lead(leads: Sequence[Lead]) -> Lead:
    """One condition implied by every alternative: a single lead as is, several equalities on the
    same field as ``$in``."""
    if not leads or any(lead is None for lead in leads):
        return None
    if len(leads) == 1:
        return leads[0]
    fields = {lead[0] for lead in leads}  # type: ignore[index]
    values = [lead[1] for lead in leads]  # type: ignore[index]
    if len(fields) != 1 or any(isinstance(v, dict) for v in values):
        return None
    return fields.pop(), {"$in": list(dict.fromkeys(values))}


def _key_condition(array: str, pkeys: Sequence[str], lead: Lead) -> tuple[str, Any] | None:
    """The lead as a condition on its key field: equalities for every type searched, a range only
    within one ``Type.param`` (anything else is left to the ``$elemMatch``)."""
    field, cond = lead if lead is not None else (next(iter(KEY_FIELDS[array])), {})
    key = f"{array}.{KEY_FIELDS[array][field]}"
    if not isinstance(cond, dict) or "$in" in cond:
        values = cond["$in"] if isinstance(cond, dict) else [cond]
        return key, _one_or_in([f"{p}|{_encode(field, v)}" for p in pkeys for v in values])
    if len(pkeys) != 1:
        return None
    bounds = {"$gte": f"{pkeys[0]}|", "$lt": f"{pkeys[0]}|{_PREFIX_END}"}
    for op, value in cond.items():
        for same_side in (("$gt", "$gte") if op in ("$gt", "$gte") else ("$lt", "$lte")):
            bounds.pop(same_side, None)
        bounds[op] = f"{pkeys[0]}|{_encode(field, value)}"
    return key, bounds


def _array_condition(positive: list[Filter], negative: list[Filter]) -> Filter:
    """Every positive element condition holds for some element, no negative one for any. Each
    element condition starts with ``p`` (SecantusDB misreads an ``$elemMatch`` starting with ``$``)."""
    cond: Filter = {}
    if len(positive) == 1:
        cond["$elemMatch"] = positive[0]
    elif positive:
        cond["$all"] = [{"$elemMatch": e} for e in positive]
    if len(negative) == 1:
        cond["$not"] = {"$elemMatch": negative[0]}
    elif negative:
        pkeys = [p for e in negative for p in (e["p"]["$in"] if isinstance(e["p"], dict) else [e["p"]])]
        cond["$not"] = {"$elemMatch": {"p": {"$in": list(dict.fromkeys(pkeys))}, "$or": negative}}
    return cond


class Compiler:
    """Builds the filter selecting current, non-deleted resources that match criteria. Chains and
    ``_has`` run their inner query first through ``fetch`` (inside the caller's session) and become an
    ``$in`` on the ids found, at most ``MAX_JOIN_IDS`` of them."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    def filter(self, types: Sequence[str], criteria: Sequence[AnyCriterion]) -> Filter:
        """Leads first, in criterion order (SecantusDB uses the first it can), then the exact
        conditions: all ANDed by sitting side by side in one document."""
        leads: Filter = {}
        positive: dict[str, list[Filter]] = {}
        negative: dict[str, list[Filter]] = {}
        ids: set[str] | None = None
        for c in criteria:
            if isinstance(c, HasCriterion):
                found = self._has_ids(c, types)
                ids = found if ids is None else ids & found
                leads.setdefault("id", None)  # holds its place; set once every _has is known
                continue
            array, element, negate, lead = self._criterion(c, types)
            (negative if negate else positive).setdefault(array, []).append(element)
            if lead is not None:
                leads.setdefault(*lead)
        if ids is not None:
            leads["id"] = {"$in": sorted(ids)}
        doc: Filter = {**leads, "type": _one_or_in(types), "d": False}
        for array in dict.fromkeys([*positive, *negative]):
            doc[array] = _array_condition(positive.get(array, []), negative.get(array, []))
        return doc

    def _bounded(self, query: Filter, projection: dict[str, int], limit: int | None = None) -> list[dict[str, Any]]:
        """The inner query's documents, at most ``limit`` (default ``MAX_JOIN_IDS``) of them."""
        limit = MAX_JOIN_IDS if limit is None else limit
        docs = self._fetch(query, projection, limit + 1)
        if len(docs) > limit:
            raise FhirError(400, "too-costly", f"a chained or _has parameter matches more than {MAX_JOIN_IDS} "
                                               "resources; narrow it down with more criteria")
        return docs

    def _target_ids(self, c: ChainCriterion, limit: int | None = None) -> list[str]:
        """The ids of the ``c.target_type`` resources a chain reaches (see ``_bounded``)."""
        return [t["id"] for t in self._bounded(self.filter((c.target_type,), [c.inner, *c.guard]), {"id": 1}, limit)]

    def _has_ids(self, c: HasCriterion, types: Sequence[str]) -> set[str]:
        pkey = f"{c.source_type}.{c.source_param}"
        sources = self._bounded(self.filter((c.source_type,), [c.inner, *c.guard]), {"ref": 1})
        return {r["ti"] for source in sources for r in source["ref"]
                if r["p"] == pkey and r["tt"] in types and r["ti"] is not None}

    def _criterion(self, c: Criterion | ChainCriterion | ChainAnyCriterion | CompartmentCriterion,
                   types: Sequence[str]) -> tuple[str, Filter, bool, tuple[str, Any] | None]:
        """(array, element condition, negated, lead on a key field) for one criterion."""
        if isinstance(c, CompartmentCriterion):
            pkeys = list(c.pkeys)
            element = {"p": _one_or_in(pkeys), "tt": c.compartment_type, "ti": c.compartment_id}
            return "ref", element, False, _key_condition("ref", pkeys, ("ti", c.compartment_id))
        pkeys = [f"{t}.{c.param}" for t in types]
        if isinstance(c, ChainCriterion):
            ids = self._target_ids(c)
            element = {"p": _one_or_in(pkeys), "tt": c.target_type, "ti": {"$in": ids}}
            return "ref", element, False, _key_condition("ref", pkeys, ("ti", {"$in": ids}))
        if isinstance(c, ChainAnyCriterion):
            return self._chain_any(c, pkeys)
        array = ARRAY_BY_TYPE[c.param_type]
        missing = [m for m in c.matches if isinstance(m, MissingMatch)]
        if missing:
            is_missing = missing[0].missing != c.negate
            lead = None if is_missing else _key_condition(array, pkeys, None)
            return array, {"p": _one_or_in(pkeys)}, is_missing, lead
        built = [self.match(m, c.param_type, "") for m in c.matches]
        conds = [cond for cond, _ in built]
        element = {"p": _one_or_in(pkeys), **(conds[0] if len(conds) == 1 else {"$or": conds})}
        if c.negate:
            return array, element, True, None
        lead = _common_lead([lead for _, lead in built])
        if lead is not None and lead[0] not in KEY_FIELDS[array]:
            lead = None
        return array, element, False, _key_condition(array, pkeys, lead)

    def _chain_any(self, c: ChainAnyCriterion, pkeys: list[str]) -> tuple[str, Filter, bool, tuple[str, Any] | None]:
        """One reference element pointing at any alternative's targets (each type with its own ids),
        led by every id found; all alternatives together reach at most ``MAX_JOIN_IDS`` targets."""
        reached: list[Filter] = []
        found = 0
        for alternative in c.alternatives:
            ids = self._target_ids(alternative, MAX_JOIN_IDS - found)
            found += len(ids)
            if ids:
                reached.append({"tt": alternative.target_type, "ti": {"$in": ids}})
        element: Filter = {"p": _one_or_in(pkeys)}
        if len(reached) == 1:
            element.update(reached[0])
        elif reached:
            element["$or"] = reached
        else:
            element["ti"] = {"$in": []}
        ids = list(dict.fromkeys(i for r in reached for i in r["ti"]["$in"]))
        return "ref", element, False, _key_condition("ref", pkeys, ("ti", {"$in": ids}))

    def match(self, m: Match, param_type: str, at: str) -> tuple[Filter, Lead]:
        """The condition on one index element (field names prefixed with ``at`` inside a composite)
        and the lead condition a key can serve, if any."""
        if isinstance(m, TokenMatch):
            cond: Filter = {}
            if m.match_code:
                cond[f"{at}c"] = m.code
            if m.match_system:
                cond[f"{at}s"] = m.system
            return cond, next(iter(cond.items()), None)
        if isinstance(m, TokenTextMatch):
            return {f"{at}t": _prefix_range(m.text)}, (f"{at}t", _prefix_range(m.text))
        if isinstance(m, StringMatch):
            if m.mode == "exact":
                return {f"{at}e": m.value}, (f"{at}e", m.value)
            if m.mode == "contains":
                return {f"{at}n": {"$regex": re.escape(m.value), "$options": ""}}, None
            return {f"{at}n": _prefix_range(m.value)}, (f"{at}n", _prefix_range(m.value))
        if isinstance(m, ReferenceMatch):
            if m.url is not None:
                return {f"{at}u": m.url}, (f"{at}u", m.url)
            cond = {f"{at}ti": m.target_id}
            if m.target_type is not None:
                cond[f"{at}tt"] = m.target_type
            if m.local_base is None:
                cond[f"{at}u"] = None
            else:
                cond["$or"] = [{f"{at}u": None}, {f"{at}u": _prefix_range(m.local_base)}]
            return cond, (f"{at}ti", m.target_id)
        if isinstance(m, UriMatch):
            return _uri(m, f"{at}u")
        if isinstance(m, RangeMatch):
            if param_type == "date":
                return _date_range(m, at)
            cond, lead = _point_range(m, at)
            if param_type == "quantity":
                if m.code is not None:
                    cond[f"{at}c"] = m.code
                    lead = (f"{at}c", m.code)
                if m.system is not None:
                    cond[f"{at}s"] = m.system
            return cond, lead
        if isinstance(m, CompositeMatch):
            return self._composite(m)
        raise TypeError(f"no MongoDB filter for {type(m).__name__}")

    def _composite(self, m: CompositeMatch) -> tuple[Filter, Lead]:
        cond: Filter = {}
        lead: Lead = None
        for i, (part, part_type) in enumerate(zip(m.parts, m.part_types, strict=True)):
            part_cond, part_lead = self.match(part, part_type, f"_{i}.")
            if cond.keys() & part_cond.keys():
                cond.setdefault("$and", []).append(part_cond)
            else:
                cond.update(part_cond)
            if i == 0:
                lead = part_lead
        return cond, lead


def _uri(m: UriMatch, field: str) -> tuple[Filter, Lead]:
    if m.mode == "below":
        base = m.uri.rstrip("/") + "/"
        return {"$or": [{field: m.uri}, {field: _prefix_range(base)}]}, (
            field, {"$gte": min(m.uri, base), "$lt": base + _PREFIX_END})
    if m.mode == "above":
        prefixes = m.ancestors()
        return {field: {"$in": prefixes}}, (field, {"$in": prefixes})
    return {field: m.uri}, (field, m.uri)


def _date_range(m: RangeMatch, at: str) -> tuple[Filter, Lead]:
    """Stored ``[lo, hi)`` against the search value's ``[low, high)`` (search.html prefixes)."""
    lo, hi = f"{at}lo", f"{at}hi"
    p = m.prefix
    if p is Prefix.NE:
        return {"$or": [{lo: {"$lt": m.low}}, {hi: {"$gt": m.high}}]}, None
    if p is Prefix.GE:  # GT, or contained in the search range; either way it ends after ``low``
        return {"$or": [{hi: {"$gt": m.high}}, {lo: {"$gte": m.low}}]}, (hi, {"$gt": m.low})
    if p is Prefix.LE:  # LT, or contained in the search range; either way it starts before ``high``
        return {"$or": [{lo: {"$lt": m.low}}, {hi: {"$lte": m.high}}]}, (lo, {"$lt": m.high})
    cond: Filter = {
        Prefix.EQ: {lo: {"$gte": m.low}, hi: {"$lte": m.high}},
        Prefix.GT: {hi: {"$gt": m.high}},
        Prefix.LT: {lo: {"$lt": m.low}},
        Prefix.SA: {lo: {"$gte": m.high}},
        Prefix.EB: {hi: {"$lte": m.low}},
        Prefix.AP: {lo: {"$lt": m.high}, hi: {"$gt": m.low}},  # overlaps the (already widened) range
    }[p]
    return cond, next(iter(cond.items()))


def _point_range(m: RangeMatch, at: str) -> tuple[Filter, Lead]:
    """A stored number against the search value: ``eq`` within its precision range, the comparisons
    against the value itself (the middle of that range)."""
    v = f"{at}v"
    p = m.prefix
    if p is Prefix.NE:
        return {"$or": [{v: {"$lt": m.low}}, {v: {"$gte": m.high}}]}, None
    if p in (Prefix.EQ, Prefix.AP):
        bounds: Filter = {"$gte": m.low, "$lt": m.high}
    else:
        op = {Prefix.GT: "$gt", Prefix.SA: "$gt", Prefix.LT: "$lt", Prefix.EB: "$lt", Prefix.GE: "$gte",
              Prefix.LE: "$lte"}[p]
        bounds = {op: (m.low + m.high) / 2}
    return {v: bounds}, (v, bounds)


def creation_key(moment_ms: int, key: str) -> str:
    """``ck``: a resource's creation time (ms) and ``_id`` as one string, its immutable place in the
    default order and the tie-breaker of every sort."""
    return f"{moment_ms:015d} {key}"


def later_than(moment_ms: int) -> str:
    """The smallest creation key (``ck``) or history key (``hk``) of a moment after ``moment_ms``:
    both start with the moment in fixed-width milliseconds."""
    return f"{moment_ms + 1:015d}"


def _sort_source(key: SortKey) -> str:
    if key.param == "_id":
        return "$id"
    if key.param == "_lastUpdated":
        return "$lu"
    if ARRAY_BY_TYPE.get(key.param_type) in _SORT_FIELDS:
        return f"$sd.{key.param}" if key.descending else f"$sa.{key.param}"
    raise TypeError(f"cannot sort on a {key.param_type} parameter")


def sort_stages(keys: Sequence[SortKey], forward: bool = True) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """``$addFields`` computing per SortKey whether its value is missing (``_m<i>``) and the value
    (``_k<i>``), and the ``$sort`` order (missing values last in either direction, then the
    creation key), reversed for walking backwards. Like SQLite's ``sort_expression``."""
    fields: dict[str, Any] = {}
    order: list[tuple[str, int]] = []
    for i, key in enumerate(keys):
        source = {"$ifNull": [_sort_source(key), None]}
        fields[f"_m{i}"] = {"$eq": [source, None]}
        fields[f"_k{i}"] = source
        order += [(f"_m{i}", 1), (f"_k{i}", -1 if key.descending else 1)]
    order.append(("ck", 1))
    return fields, order if forward else [(name, -direction) for name, direction in order]


def keyset_match(keys: Sequence[SortKey], position: Sequence[Any], forward: bool) -> Filter:
    """Documents strictly after (``forward``) or before ``position`` in the ``sort_stages`` order;
    ``position`` holds the ``_k<i>`` values (None when missing), then the creation key."""
    alternatives: list[Filter] = []
    equal: Filter = {}
    for i, (key, value) in enumerate(zip(keys, position, strict=False)):
        missing, field = f"_m{i}", f"_k{i}"
        if value is None:
            if not forward:
                alternatives.append({**equal, missing: False})
        else:
            alternatives.append({**equal, missing: False, field: {"$lt" if key.descending == forward else "$gt": value}})
            if forward:
                alternatives.append({**equal, missing: True})
        equal = {**equal, missing: value is None, **({} if value is None else {field: value})}
    alternatives.append({**equal, "ck": {"$gt" if forward else "$lt": position[-1]}})
    return {"$or": alternatives}


def revinclude_filter(inc: Include, target_types: Iterable[str], target_ids: Iterable[str]) -> Filter:
    """``_revinclude``: current ``inc.source_type`` resources whose reference ``inc.param`` (any, for
    ``*``) points at one of the targets; like SQLite, types and ids are matched independently."""
    ids = sorted(target_ids)
    element: Filter = {"tt": {"$in": sorted(target_types)}, "ti": {"$in": ids}}
    if inc.source_type == "*":  # _revinclude=*: any reference of any resource
        return {"ref.ti": {"$in": ids}, "d": False, "ref": {"$elemMatch": element}}
    if inc.param == "*":
        return {"ref.ti": {"$in": ids}, "type": inc.source_type, "d": False, "ref": {"$elemMatch": element}}
    pkey = f"{inc.source_type}.{inc.param}"
    return {"ref.ki": {"$in": [f"{pkey}|{i}" for i in ids]}, "type": inc.source_type, "d": False,
            "ref": {"$elemMatch": {"p": pkey, **element}}}
