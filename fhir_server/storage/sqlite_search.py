"""Compiles a SearchPlan into SQL over the index tables of ``sqlite_schema``.

One predicate builder per parameter type. Every criterion has two forms:

- a *source*: the pks of the resources it matches, read from one index (``Source``);
- a *probe*: a condition on one candidate's pk, answered from that resource's own index rows (the
  tables are clustered by ``(pk, seq)``), so its cost does not grow with the store.

A search drives from the most selective source (``select``) and probes every other criterion. When
the driver is a single equality on an index (``code=system|x``, ``subject=Patient/1``) its rows come
in pk order, so an unsorted page reads only as many index entries as it returns. Nothing reads the
wide ``resource`` rows except to return a page: the candidates' type, deletion and last update come
from the covering ``resource_state`` index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fhir_server.search.normalize import normalize_text
from fhir_server.search.plan import (
    AnyCriterion,
    ChainAnyCriterion,
    ChainCriterion,
    CompartmentCriterion,
    CompositeMatch,
    Criterion,
    HasCriterion,
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
from fhir_server.storage.base import HOLDER_SYSTEM
from fhir_server.storage.sqlite_schema import stored_names

TABLE_BY_TYPE = {
    "string": "idx_string",
    "token": "idx_token",
    "reference": "idx_reference",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
}

STATE = "resource s INDEXED BY resource_state"
"""The candidates' type, deletion and last update, read from the covering index, never the rows."""

ESTIMATE_CAP = 1000
"""Sources are compared by their size counted up to this many rows."""

SMALL_ENOUGH = 100
"""A driver of at most this many rows is kept without counting the other sources: probing that
many candidates costs no more than counting would."""

ID = "_id"
"""Served by ``resource (type, id)``: the store keeps no index rows for it (see ``_index_rows``)."""

LAST_UPDATED = "_lastUpdated"
"""Served by ``resource (type, last_updated)``, no index rows either: the server stamps every version
itself, to the millisecond, so the parameter's one value is ``[last_updated, last_updated + 1)``."""

_PREFIX_END = "\U0010ffff"

Fragment = tuple[str, list[Any]]
KeyLookup = Callable[[Sequence[str]], list[int]]
"""``"<ResourceType>.<param>"`` names to their integer ``pkey`` (see ``sqlite_schema.NameKeys``)."""
HolderLookup = Callable[[str], list[int]]
"""A record holder (``Organization/x``) to the keys ``h`` of the holder sets that include it."""

MAX_HOLDER_SETS = 64
"""A record-holder guard is checked on the driving index rows (``h IN (...)``) when the holder is in
at most this many distinct sets of holders; beyond that, on each candidate's ``resource_state`` row."""


@dataclass(frozen=True, slots=True)
class Source:
    """The pks a criterion matches: rows of ``table`` (alias ``alias``) meeting ``where``, or, when
    ``table`` is None, the rows of the SELECT ``where`` (one ``pk`` column)."""

    where: str
    params: list[Any]
    table: str | None = None
    alias: str = ""
    ordered: bool = False  # the rows come from one index run, in ascending pk order
    unique: bool = False  # no pk comes twice (see ``_index_rows``: one row per resource and key)
    inner: tuple[Source, ...] = ()  # what a chain or ``_has`` (or a union of chains) reads first: estimated first
    scans: bool = False  # a chain or ``_has`` whose inner criterion cannot drive: never run to estimate

    def select(self) -> Fragment:
        if self.table is None:
            return self.where, self.params
        return f"SELECT {self.alias}.pk FROM {self.table} {self.alias} WHERE {self.where}", self.params

    @property
    def preference(self) -> int:
        """Among sources of equal size: streaming ones first, subqueries last."""
        return 0 if self.ordered and self.unique else 1 if self.ordered else 2 if self.table else 3


@dataclass(slots=True)
class Body:
    """``FROM ... WHERE ...`` of the candidates of a search, whose pk is the expression ``pk``."""

    pk: str
    from_: str
    from_params: list[Any] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    distinct: bool = False  # a pk may come more than once
    ordered: bool = False  # the candidates stream in pk order: a page reads only as far as it returns
    probed: bool = False  # some criterion is checked per candidate beyond the driver's own index rows

    def add(self, fragment: Fragment) -> None:
        self.where.append(fragment[0])
        self.params += fragment[1]

    def sql(self, columns: str) -> Fragment:
        distinct = "DISTINCT " if self.distinct else ""
        where = f" WHERE {' AND '.join(self.where)}" if self.where else ""
        return f"SELECT {distinct}{columns} FROM {self.from_}{where}", [*self.from_params, *self.params]


class Compiler:
    """Builds the sources, probes and sort values of one statement (aliases are unique within it)."""

    def __init__(self, keys: KeyLookup, holders: HolderLookup | None = None) -> None:
        self._keys = keys
        self._holders = holders
        self._alias_counter = 0

    def _alias(self, stem: str) -> str:
        self._alias_counter += 1
        return f"{stem}{self._alias_counter}"

    def _pkeys(self, names: Sequence[str]) -> Fragment:
        keys = self._keys([stored for name in names for stored in stored_names(name)])
        return "(" + ",".join("?" * len(keys)) + ")", keys

    def _param_keys(self, types: Sequence[str], param: str) -> Fragment:
        return self._pkeys([f"{t}.{param}" for t in types])

    # --- choosing the driver ---------------------------------------------------------------------

    def select(self, types: Sequence[str], criteria: Sequence[AnyCriterion],
               count: Callable[[Fragment], int], state: Fragment | None = None) -> Body:
        """The candidates: resources of ``types`` matching every criterion, and ``state`` (a
        condition on alias ``s``, the candidate's ``resource_state`` entry) when given. The driver
        is the source with the fewest rows (``count`` runs a SELECT and counts its rows); a
        record-holder guard is checked on the driver's own index rows when it reads an index table,
        and every other criterion is probed."""
        sources = [(c, source) for c in criteria if (source := self.source(c, types)) is not None]
        joined = state is not None
        if not sources:
            body, joined = Body("s.pk", STATE, ordered=True), True
            type_in = ",".join("?" * len(types))
            body.add((f"s.type IN ({type_in}) AND s.deleted = 0", list(types)))
        else:
            driver, source, size = _smallest(sources, count)
            criteria = [c for c in criteria if c is not driver]
            if not source.ordered and source.table is not None:
                source, criteria = _intersect(source, size, [pair for pair in sources if pair[0] is not driver],
                                              criteria, count)
            source, criteria = self._held_in_index(source, criteria)
            # a record-holder guard left to the state row: joined, it costs a fifth less than a probe
            joined = joined or (source.ordered and any(isinstance(c, Criterion) and _holder(c) for c in criteria))
            body = self._drive(source, joined)
        if state is not None:
            body.add(state)
        for c in criteria:
            holder = _holder(c) if joined and isinstance(c, Criterion) else None
            if holder is not None:  # the candidate's state row is at hand: no second seek
                body.add(_held_by("s", holder))
            else:
                body.add(self.probe(c, types, body.pk))
            body.probed = True
        return body

    def _held_in_index(self, source: Source, criteria: list[AnyCriterion]) -> tuple[Source, list[AnyCriterion]]:
        """``source`` checking the record-holder guards among ``criteria`` on its own index rows
        (their ``h``), and the criteria left; unchanged when it reads no index table or a holder is
        in too many sets of holders."""
        if self._holders is None or source.table not in TABLE_BY_TYPE.values():
            return source, criteria
        kept = []
        for c in criteria:
            holder = _holder(c) if isinstance(c, Criterion) else None
            keys = self._holders(holder) if holder is not None else None
            if keys is None or len(keys) > MAX_HOLDER_SETS:
                kept.append(c)
                continue
            held = f"{source.alias}.h IN ({','.join('?' * len(keys))})" if keys else "0"
            source = replace(source, where=f"({source.where}) AND {held}", params=[*source.params, *keys])
        return source, kept

    def recent(self, types: Sequence[str], criteria: Sequence[AnyCriterion], since: int,
               state: Fragment | None) -> Body:
        """The candidates written after ``since`` (few by construction): the resources of ``types``
        updated since then, each probed for every criterion."""
        body = Body("s.pk", "resource s INDEXED BY resource_type_updated")
        type_in = ",".join("?" * len(types))
        body.add((f"s.type IN ({type_in}) AND s.last_updated > ? AND s.deleted = 0", [*types, since]))
        if state is not None:
            body.add(state)
        for c in criteria:
            body.add(self.probe(c, types, body.pk))
        return body

    def _drive(self, source: Source, with_state: bool) -> Body:
        if with_state and not source.ordered:
            # every candidate needs its state checked: collect the pks first (sorted and deduplicated
            # by SQLite's IN list), then check them in pk order, stopping at the page's end
            select, params = source.select()
            body = Body("s.pk", STATE)
            body.add((f"s.pk IN ({select})", params))
            return body
        if source.table is not None:
            alias, from_, from_params = source.alias, f"{source.table} {source.alias}", []
        else:
            alias = self._alias("d")
            from_, from_params = f"({source.where}) {alias}", source.params
        if with_state:
            from_ += f" CROSS JOIN {STATE} ON s.pk = {alias}.pk"
        body = Body(f"{alias}.pk", from_, from_params, distinct=not source.unique, ordered=source.ordered)
        if source.table is not None:
            body.add((source.where, source.params))
        return body

    # --- sources -----------------------------------------------------------------------------------

    def source(self, c: AnyCriterion, types: Sequence[str]) -> Source | None:
        """The rows that can drive a search for ``c``; None when it cannot drive (``:not``,
        ``:missing=true``: they match by the absence of rows)."""
        if isinstance(c, ChainCriterion):
            return self._chain_source(c, types)
        if isinstance(c, ChainAnyCriterion):
            return self._chain_any_source(c, types)
        if isinstance(c, HasCriterion):
            return self._has_source(c, types)
        if isinstance(c, CompartmentCriterion):
            d = self._alias("d")
            pkeys, keys = self._pkeys(c.pkeys)
            return Source(f"{d}.pkey IN {pkeys} AND {d}.target_id = ? AND {d}.target_type = ? "
                          f"AND {d}.grp IS NULL",
                          [*keys, c.compartment_id, c.compartment_type], "idx_reference", d, len(keys) == 1)
        if c.negate or c.guard:  # a guard matches most rows of its types: it filters, never drives
            return None
        if c.param == ID:
            return self._id_source(c, types)
        missing = [m for m in c.matches if isinstance(m, MissingMatch)]
        if c.param == LAST_UPDATED:
            return None if missing else self._last_updated_source(c, types)
        if c.param_type == "composite":
            return None if missing else self._composite_source(c, types)
        d = self._alias("d")
        table = TABLE_BY_TYPE[c.param_type]
        pkeys, keys = self._param_keys(types, c.param)
        if missing:
            if missing[0].missing:
                return None
            return Source(f"{d}.pkey IN {pkeys}{_plain(table, d)}", keys, table, d)
        ors, params = self._ors(c, d)
        single = len(keys) == 1 and len(c.matches) == 1
        return Source(f"{d}.pkey IN {pkeys}{_plain(table, d)} AND ({ors})", [*keys, *params], table, d,
                      single and _in_pk_order(c.matches[0]), single and _one_per_resource(c.matches[0]))

    def _id_source(self, c: Criterion, types: Sequence[str]) -> Source | None:
        if any(isinstance(m, MissingMatch) for m in c.matches):
            return None
        d, ids = self._alias("d"), _ids(c)
        type_in, id_in = ",".join("?" * len(types)), ",".join("?" * len(ids))
        single = len(types) == 1 and len(ids) == 1
        return Source(f"{d}.type IN ({type_in}) AND {d}.id IN ({id_in}) AND {d}.deleted = 0", [*types, *ids],
                      "resource", d, single, True)

    def _last_updated_source(self, c: Criterion, types: Sequence[str]) -> Source:
        d = self._alias("d")
        ors, params = self._ors(c, d)
        type_in = ",".join("?" * len(types))
        return Source(f"{d}.type IN ({type_in}) AND ({ors}) AND {d}.deleted = 0", [*types, *params],
                      "resource", d, unique=True)

    def _composite_source(self, c: Criterion, types: Sequence[str]) -> Source:
        alternatives, params = [], []
        for m in c.matches:
            assert isinstance(m, CompositeMatch)
            sql, alternative_params = self._composite_join(c.param, m, types, None)
            alternatives.append(sql)
            params += alternative_params
        return Source(" UNION ALL ".join(alternatives), params)

    def _composite_join(self, param: str, m: CompositeMatch, types: Sequence[str], pk: str | None) -> Fragment:
        """Parts from the same element: rows of the part tables sharing pk and ``grp``. With ``pk``,
        only that resource's rows (a probe); else driven by the first part's index."""
        tables = [TABLE_BY_TYPE[pt] for pt in m.part_types]
        aliases = [self._alias("c") for _ in tables]
        joins = [f"{tables[0]} {aliases[0]}"]
        for table, alias in zip(tables[1:], aliases[1:], strict=True):
            joins.append(f"CROSS JOIN {table} {alias} ON {alias}.pk = {aliases[0]}.pk "
                         f"AND {alias}.grp = {aliases[0]}.grp")
        conds, params = [], []
        if pk is not None:
            conds.append(f"{aliases[0]}.pk = {pk}")
        for i, (part, part_type, alias) in enumerate(zip(m.parts, m.part_types, aliases, strict=True)):
            pkeys, keys = self._param_keys(types, f"{param}${i}")
            unary = "+" if i > 0 or pk is not None else ""
            match_sql, match_params = self.match(part, part_type, alias)
            conds.append(f"{unary}{alias}.pkey IN {pkeys} AND ({match_sql})")
            params += [*keys, *match_params]
        return f"SELECT {aliases[0]}.pk FROM {' '.join(joins)} WHERE {' AND '.join(conds)}", params

    def _chain_source(self, c: ChainCriterion, types: Sequence[str]) -> Source:
        x = self._alias("x")
        pkeys, keys = self._param_keys(types, c.param)
        t = self._alias("t")
        inner = self.source(c.inner, (c.target_type,))
        if inner is not None:
            select, params = inner.select()
            targets = f"SELECT {t}.id FROM resource {t} WHERE {t}.pk IN ({select})"
        else:
            probe, probe_params = self.probe(c.inner, (c.target_type,), f"{t}.pk")
            targets = f"SELECT {t}.id FROM resource {t} WHERE {t}.type = ? AND {t}.deleted = 0 AND {probe}"
            params = [c.target_type, *probe_params]
        guard, guard_params = self._guard(c.guard, c.target_type, f"{t}.pk")
        targets += guard
        params = [*params, *guard_params]
        return Source(f"SELECT {x}.pk FROM idx_reference {x} WHERE {x}.pkey IN {pkeys} AND {x}.grp IS NULL "
                      f"AND {x}.target_type = ? AND {x}.target_id IN ({targets})", [*keys, c.target_type, *params],
                      inner=() if inner is None else (inner,), scans=inner is None)

    def _chain_any_source(self, c: ChainAnyCriterion, types: Sequence[str]) -> Source:
        """The union of the alternatives' chains; estimated by what each of them reads first."""
        chains = [self._chain_source(a, types) for a in c.alternatives]
        selects = [chain.select() for chain in chains]
        return Source(" UNION ALL ".join(sql for sql, _ in selects), [p for _, params in selects for p in params],
                      inner=tuple(inner for chain in chains for inner in chain.inner),
                      scans=any(chain.scans for chain in chains))

    def _has_source(self, c: HasCriterion, types: Sequence[str]) -> Source:
        t, x = self._alias("t"), self._alias("x")
        key = self._keys([f"{c.source_type}.{c.source_param}"])[0]
        type_in = ",".join("?" * len(types))
        source = self.source(c.inner, (c.source_type,))
        guard, guard_params = self._guard(c.guard, c.source_type, f"{x}.pk")
        if source is not None:  # the sources' own rows (primary key), not every reference of the parameter
            select, inner_params = source.select()
            references = f"{x}.pk IN ({select}){guard} AND +{x}.pkey = ?"
        else:
            inner, inner_params = self.probe(c.inner, (c.source_type,), f"{x}.pk")
            references = f"{inner}{guard} AND {x}.pkey = ?"
        inner_params = [*inner_params, *guard_params]
        return Source(f"SELECT {t}.pk FROM resource {t} WHERE ({t}.type, {t}.id) IN (SELECT {x}.target_type, "
                      f"{x}.target_id FROM idx_reference {x} WHERE {references} AND {x}.grp IS NULL "
                      f"AND {x}.target_type IN ({type_in})) AND {t}.deleted = 0", [*inner_params, key, *types],
                      inner=() if source is None else (source,), scans=source is None)

    def _guard(self, guard: Sequence[AnyCriterion], resource_type: str, pk: str) -> Fragment:
        """`` AND ...`` for a chain's or ``_has``'s extra criteria on the resource at ``pk``."""
        sql, params = "", []
        for c in guard:
            probe, probe_params = self.probe(c, (resource_type,), pk)
            sql += f" AND {probe}"
            params += probe_params
        return sql, params

    # --- probes --------------------------------------------------------------------------------------

    def probe(self, c: AnyCriterion, types: Sequence[str], pk: str) -> Fragment:
        """Whether the resource whose pk is the SQL expression ``pk`` matches ``c``."""
        if isinstance(c, ChainCriterion):
            x, t = self._alias("x"), self._alias("t")
            pkeys, keys = self._param_keys(types, c.param)
            inner, inner_params = self.probe(c.inner, (c.target_type,), f"{t}.pk")
            guard, guard_params = self._guard(c.guard, c.target_type, f"{t}.pk")
            return (f"EXISTS (SELECT 1 FROM idx_reference {x} CROSS JOIN resource {t} ON {t}.type = {x}.target_type "
                    f"AND {t}.id = {x}.target_id WHERE {x}.pk = {pk} AND +{x}.pkey IN {pkeys} "
                    f"AND {x}.target_type = ? AND {t}.deleted = 0 AND {inner}{guard})",
                    [*keys, c.target_type, *inner_params, *guard_params])
        if isinstance(c, ChainAnyCriterion):
            probes = [self.probe(a, types, pk) for a in c.alternatives]
            return f"({' OR '.join(sql for sql, _ in probes)})", [p for _, params in probes for p in params]
        if isinstance(c, HasCriterion):
            t, x = self._alias("t"), self._alias("x")
            key = self._keys([f"{c.source_type}.{c.source_param}"])[0]
            inner, inner_params = self.probe(c.inner, (c.source_type,), f"{x}.pk")
            guard, guard_params = self._guard(c.guard, c.source_type, f"{x}.pk")
            return (f"EXISTS (SELECT 1 FROM resource {t} CROSS JOIN idx_reference {x} WHERE {t}.pk = {pk} "
                    f"AND {x}.pkey = ? AND {x}.grp IS NULL AND {x}.target_id = {t}.id AND {x}.target_type = {t}.type "
                    f"AND {inner}{guard})",
                    [key, *inner_params, *guard_params])
        if isinstance(c, CompartmentCriterion):
            p = self._alias("p")
            pkeys, keys = self._pkeys(c.pkeys)
            return (f"EXISTS (SELECT 1 FROM idx_reference {p} WHERE {p}.pk = {pk} AND +{p}.pkey IN {pkeys} "
                    f"AND {p}.target_id = ? AND {p}.target_type = ?)", [*keys, c.compartment_id, c.compartment_type])
        if c.param == ID:
            missing = [m for m in c.matches if isinstance(m, MissingMatch)]
            if missing:
                return ("0" if missing[0].missing != c.negate else "1"), []
            p, ids = self._alias("p"), _ids(c)
            return (f"{'NOT ' if c.negate else ''}EXISTS (SELECT 1 FROM resource {p} WHERE {p}.pk = {pk} "
                    f"AND {p}.id IN ({','.join('?' * len(ids))}))", ids)
        missing = [m for m in c.matches if isinstance(m, MissingMatch)]
        if missing:
            present, params = self._present(c, types, pk)
            return f"{'NOT ' if missing[0].missing != c.negate else ''}({present})", params
        if c.param == LAST_UPDATED:
            p = self._alias("p")
            ors, params = self._ors(c, p)
            return (f"{'NOT ' if c.negate else ''}EXISTS (SELECT 1 FROM resource {p} INDEXED BY resource_state "
                    f"WHERE {p}.pk = {pk} AND ({ors}))", params)
        if c.param_type == "composite":
            alternatives, params = [], []
            for m in c.matches:
                assert isinstance(m, CompositeMatch)
                sql, alternative_params = self._composite_join(c.param, m, types, pk)
                alternatives.append(f"EXISTS ({sql})")
                params += alternative_params
            return f"{'NOT ' if c.negate else ''}({' OR '.join(alternatives)})", params
        p = self._alias("p")
        table = TABLE_BY_TYPE[c.param_type]
        pkeys, keys = self._param_keys(types, c.param)
        holder = _holder(c)
        if holder is not None:  # the stores keep holders beside the resource: one seek in resource_state
            held, held_params = _held_by(p, holder)
            return (f"EXISTS (SELECT 1 FROM resource {p} INDEXED BY resource_state WHERE {p}.pk = {pk} "
                    f"AND {held})", held_params)
        rows = f"SELECT 1 FROM {table} {p} WHERE {p}.pk = {pk} AND +{p}.pkey IN {pkeys}"
        ors, params = self._ors(c, p)
        return f"{'NOT ' if c.negate else ''}EXISTS ({rows} AND ({ors}))", [*keys, *params]

    def _present(self, c: Criterion, types: Sequence[str], pk: str) -> Fragment:
        """Whether the resource has a value for ``c.param``; a composite's first part may sit in
        any table."""
        if c.param == LAST_UPDATED:  # every version has one
            return "1", []
        if c.param_type != "composite":
            tables, param = [TABLE_BY_TYPE[c.param_type]], c.param
        else:
            tables, param = list(dict.fromkeys(TABLE_BY_TYPE.values())), f"{c.param}$0"
        sqls, params = [], []
        for table in tables:
            p = self._alias("p")
            pkeys, keys = self._param_keys(types, param)
            sqls.append(f"EXISTS (SELECT 1 FROM {table} {p} WHERE {p}.pk = {pk} AND +{p}.pkey IN {pkeys})")
            params += keys
        return " OR ".join(sqls), params

    def _ors(self, c: Criterion, t: str) -> Fragment:
        """``c``'s values ORed, against the index row ``t`` (for ``_lastUpdated``, the resource row)."""
        sqls, params = [], []
        for m in c.matches:
            if c.param == LAST_UPDATED:
                assert isinstance(m, RangeMatch)
                sql, match_params = _instant_range(m, f"{t}.last_updated")
            else:
                sql, match_params = self.match(m, c.param_type, t)
            sqls.append(f"({sql})")
            params += match_params
        return " OR ".join(sqls), params

    # --- one value ---------------------------------------------------------------------------------

    def match(self, m: Match, param_type: str, t: str) -> Fragment:
        if isinstance(m, TokenMatch):
            conds, params = [], []
            if m.match_code:
                conds.append(f"{t}.code = ?")
                params.append(m.code)
            if m.match_system:
                if m.system is None:
                    conds.append(f"{t}.system IS NULL")
                else:
                    conds.append(f"{t}.system = ?")
                    params.append(m.system)
            return " AND ".join(conds) or "1", params
        if isinstance(m, TokenTextMatch):
            return _prefix(f"{t}.text", m.text)
        if isinstance(m, StringMatch):
            if m.mode == "exact":
                return f"{t}.norm = ? AND {t}.exact = ?", [normalize_text(m.value), m.value]
            if m.mode == "contains":
                escaped = m.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                return f"{t}.norm LIKE ? ESCAPE '\\'", [f"%{escaped}%"]
            return _prefix(f"{t}.norm", m.value)
        if isinstance(m, ReferenceMatch):
            if m.url is not None:
                return f"{t}.url = ?", [m.url]
            conds, params = [f"{t}.target_id = ?"], [m.target_id]
            if m.target_type is not None:
                conds.append(f"{t}.target_type = ?")
                params.append(m.target_type)
            if m.local_base is None:
                conds.append(f"{t}.url IS NULL")
            else:
                conds.append(f"({t}.url IS NULL OR ({t}.url >= ? AND {t}.url < ?))")
                params += [m.local_base, m.local_base + _PREFIX_END]
            return " AND ".join(conds), params
        if isinstance(m, UriMatch):
            if m.mode == "below":
                return (f"({t}.uri = ? OR ({t}.uri >= ? AND {t}.uri < ?))",
                        [m.uri, m.uri.rstrip("/") + "/", m.uri.rstrip("/") + "/" + _PREFIX_END])
            if m.mode == "above":
                ancestors = m.ancestors()
                return f"{t}.uri IN ({','.join('?' * len(ancestors))})", ancestors
            return f"{t}.uri = ?", [m.uri]
        if isinstance(m, RangeMatch):
            if param_type == "date":
                return _date_range(m, t)
            sql, params = _point_range(m, t)
            if param_type == "quantity":
                if m.code is not None:
                    sql += f" AND {t}.code = ?"
                    params.append(m.code)
                if m.system is not None:
                    sql += f" AND {t}.system = ?"
                    params.append(m.system)
            return sql, params
        raise TypeError(f"no SQL for {type(m).__name__}")

    # --- sort ----------------------------------------------------------------------------------------

    def sort_value(self, key: SortKey, types: Sequence[str], pk: str) -> Fragment:
        """The value a candidate sorts by: the least of its values ascending, the greatest descending
        (a date sorts by its start ascending, its end descending)."""
        if key.param in ("_id", "_lastUpdated"):
            column = "id" if key.param == "_id" else "last_updated"
            r = self._alias("r")
            return f"(SELECT {r}.{column} FROM resource {r} WHERE {r}.pk = {pk})", []
        table = TABLE_BY_TYPE.get(key.param_type)
        column = {
            "string": "norm", "token": "code", "reference": "target_id", "date": "low",
            "number": "value", "quantity": "value", "uri": "uri",
        }.get(key.param_type)
        if table is None or column is None:
            raise TypeError(f"cannot sort on a {key.param_type} parameter")
        if key.param_type == "date" and key.descending:
            column = "high"
        aggregate = "MAX" if key.descending else "MIN"
        v = self._alias("v")
        pkeys, keys = self._param_keys(types, key.param)
        return f"(SELECT {aggregate}({v}.{column}) FROM {table} {v} WHERE {v}.pk = {pk} AND +{v}.pkey IN {pkeys})", keys


def _holder(c: Criterion) -> str | None:
    """The record-holder code a guard criterion (``_security=HOLDER_SYSTEM|code``) asks for."""
    if c.guard and not c.negate and len(c.matches) == 1:
        m = c.matches[0]
        if isinstance(m, TokenMatch) and m.match_system and m.system == HOLDER_SYSTEM and m.code:
            return m.code
    return None


def _held_by(alias: str, holder: str) -> Fragment:
    """Whether the resource whose ``resource_state`` row is ``alias`` has ``holder`` among its holders."""
    return f"instr({alias}.holders, ?) > 0", [f"|{holder}|"]


def _ids(c: Criterion) -> list[str]:
    """The ids an ``_id`` criterion names (a system or ``:text`` never matches an id)."""
    return [m.code for m in c.matches if isinstance(m, TokenMatch) and m.match_code and m.code is not None
            and (not m.match_system or m.system is None)]


def _plain(table: str, alias: str) -> str:
    """The condition that lets a query use the indexes of ``table``, which leave out composite parts
    (``sqlite_schema``); token indexes keep them, since a composite search starts from its token."""
    return "" if table == "idx_token" else f" AND {alias}.grp IS NULL"


def _smallest(sources: list[tuple[AnyCriterion, Source]],
              count: Callable[[Fragment], int]) -> tuple[AnyCriterion, Source, int]:
    """The source with the fewest rows and that number, sizes counted up to ``ESTIMATE_CAP`` (the
    cap when only one source can drive): the preferred kinds first, then each of the others only up
    to the best size so far (it must be smaller to win), so choosing costs little more than reading
    the winner."""
    ranked = sorted(sources, key=lambda pair: pair[1].preference)
    best, best_size = ranked[0], ESTIMATE_CAP
    if len(ranked) == 1:
        return *best, best_size
    for pair in ranked:
        size = _estimate(pair[1], count, best_size)
        if size < best_size or pair is ranked[0]:
            best, best_size = pair, size
        if best_size <= SMALL_ENOUGH:
            break
    return *best, best_size


INTERSECT_FACTOR = 4
"""An unordered driver of n rows is intersected with the other index sources of at most this many
times n rows (and at least ``SMALL_ENOUGH``): reading an index entry in a run costs a fraction of
probing a candidate for it."""


def _intersect(driver: Source, size: int, others: list[tuple[AnyCriterion, Source]],
               criteria: list[AnyCriterion], count: Callable[[Fragment], int]) -> tuple[Source, list[AnyCriterion]]:
    """An unordered driver (a prefix, an OR of values) of about ``size`` rows, intersected with the
    other index sources that are not much larger, whose criteria then need no probe: the page reads
    every row of such a driver anyway, and ``given`` and ``family`` prefixes of a large population
    each match hundreds, together a few."""
    limit = min(ESTIMATE_CAP, max(SMALL_ENOUGH, INTERSECT_FACTOR * size))
    near = [(c, s) for c, s in others
            if s.table is not None and not s.scans and _estimate(s, count, limit + 1) <= limit]
    if not near:
        return driver, criteria
    selects = [driver.select(), *(s.select() for _, s in near)]
    merged = Source(" INTERSECT ".join(sql for sql, _ in selects), [p for _, params in selects for p in params],
                    unique=True)
    return merged, [c for c in criteria if all(c is not other for other, _ in near)]


def _estimate(source: Source, count: Callable[[Fragment], int], cap: int) -> int:
    """The number of rows of ``source``, or ``cap`` when it has at least that many."""
    if source.scans or any(_estimate(inner, count, cap) >= cap for inner in source.inner):
        return cap
    if source.table is None:
        select, params = source.select()
    else:
        select, params = f"SELECT 1 FROM {source.table} {source.alias} WHERE {source.where}", source.params
    return count((f"{select} LIMIT {cap}", params))


def _one_per_resource(m: Match) -> bool:
    """Whether no resource has two rows meeting ``m`` (on one pkey): keys that ``_index_rows``
    stores once per resource, or values the extractor never repeats."""
    if isinstance(m, TokenMatch):
        return m.match_code and m.match_system
    if isinstance(m, StringMatch):
        return m.mode == "exact"
    return isinstance(m, UriMatch) and m.mode == "exact"


def _in_pk_order(m: Match) -> bool:
    """Whether the rows meeting ``m`` (on one pkey) are one run of an index whose remaining key is
    the pk: an equality on every column the index has before it."""
    if isinstance(m, TokenMatch):
        return m.match_code
    if isinstance(m, StringMatch):
        return m.mode == "exact"
    if isinstance(m, ReferenceMatch):
        return m.url is not None or m.target_type is not None
    return isinstance(m, UriMatch) and m.mode == "exact"


def _prefix(column: str, value: str) -> Fragment:
    return f"{column} >= ? AND {column} < ?", [value, value + _PREFIX_END]


def _date_range(m: RangeMatch, t: str) -> Fragment:
    """Stored ``[low, high)`` against the search value's ``[low, high)`` (search.html prefixes)."""
    lo, hi = f"{t}.low", f"{t}.high"
    p = m.prefix
    if p is Prefix.EQ:
        return f"{lo} >= ? AND {hi} <= ?", [m.low, m.high]
    if p is Prefix.NE:
        return f"NOT ({lo} >= ? AND {hi} <= ?)", [m.low, m.high]
    if p is Prefix.GT:
        return f"{hi} > ?", [m.high]
    if p is Prefix.LT:
        return f"{lo} < ?", [m.low]
    if p is Prefix.GE:  # GT, or contained in the search range; both imply the first, indexable, term
        return f"{hi} > ? AND ({hi} > ? OR {lo} >= ?)", [m.low, m.high, m.low]
    if p is Prefix.LE:  # LT, or contained in the search range; both imply the first, indexable, term
        return f"{lo} < ? AND ({lo} < ? OR {hi} <= ?)", [m.high, m.low, m.high]
    if p is Prefix.SA:
        return f"{lo} >= ?", [m.high]
    if p is Prefix.EB:
        return f"{hi} <= ?", [m.low]
    return f"{lo} < ? AND {hi} > ?", [m.high, m.low]  # AP: overlaps the (already widened) search range


def _instant_range(m: RangeMatch, v: str) -> Fragment:
    """``_date_range`` for the stored range ``[v, v + 1)`` of an integer ``v``, written so that an
    index on ``v`` serves it. A date search's bounds are whole milliseconds too, and between integers
    ``v + 1 > x`` is ``v >= x`` and ``v + 1 <= x`` is ``v < x``: so ``ge`` reduces to ``v >= low``,
    ``le`` to ``v < high``, ``sa`` to ``gt`` and ``eb`` to ``lt``."""
    low, high = m.low, m.high
    p = m.prefix
    if p in (Prefix.EQ, Prefix.AP):
        return f"{v} >= ? AND {v} < ?", [low, high]
    if p is Prefix.NE:
        return f"NOT ({v} >= ? AND {v} < ?)", [low, high]
    if p in (Prefix.GT, Prefix.SA):
        return f"{v} >= ?", [high]
    if p in (Prefix.LT, Prefix.EB):
        return f"{v} < ?", [low]
    if p is Prefix.GE:
        return f"{v} >= ?", [low]
    return f"{v} < ?", [high]  # LE


def _point_range(m: RangeMatch, t: str) -> Fragment:
    """A stored number against the search value: ``eq`` within its precision range, the
    comparisons against the value itself (the middle of that range)."""
    v = f"{t}.value"
    p = m.prefix
    if p in (Prefix.EQ, Prefix.AP):
        return f"{v} >= ? AND {v} < ?", [m.low, m.high]
    if p is Prefix.NE:
        return f"NOT ({v} >= ? AND {v} < ?)", [m.low, m.high]
    op = {Prefix.GT: ">", Prefix.SA: ">", Prefix.LT: "<", Prefix.EB: "<", Prefix.GE: ">=", Prefix.LE: "<="}[p]
    return f"{v} {op} ?", [(m.low + m.high) / 2]


def keyset(keys: Sequence[tuple[str, list[Any], bool]], tiebreak: str, position: Sequence[Any],
           forward: bool) -> tuple[str, list[Any]]:
    """Rows strictly after (``forward``) or before ``position`` in the order
    ``expr IS NULL, expr ASC|DESC, ..., tiebreak ASC`` (missing values last in either direction).
    ``keys`` are (expression, its parameters, descending); ``position`` their values, then the
    tie-breaker's."""
    alternatives: list[str] = []
    params: list[Any] = []
    equal: list[str] = []
    equal_params: list[Any] = []
    for (expr, expr_params, descending), value in zip(keys, position, strict=False):
        if value is None:
            beyond, beyond_params = (None, []) if forward else (f"{expr} IS NOT NULL", list(expr_params))
        elif forward:
            beyond = f"({expr} {'<' if descending else '>'} ? OR {expr} IS NULL)"
            beyond_params = [*expr_params, value, *expr_params]
        else:
            beyond = f"{expr} {'>' if descending else '<'} ?"
            beyond_params = [*expr_params, value]
        if beyond is not None:
            alternatives.append(" AND ".join([*equal, beyond]))
            params += [*equal_params, *beyond_params]
        equal.append(f"{expr} IS ?")
        equal_params += [*expr_params, value]
    alternatives.append(" AND ".join([*equal, f"{tiebreak} {'>' if forward else '<'} ?"]))
    params += [*equal_params, position[-1]]
    return "(" + " OR ".join(f"({a})" for a in alternatives) + ")", params
