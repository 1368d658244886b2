"""Compiles a SearchPlan into SQL over the index tables of ``sqlite_schema``.

One predicate builder per parameter type. Every criterion becomes ``<alias>.pk IN (subquery)`` on
an index table whose ``(pkey, value)`` B-tree serves it, so searches are index lookups, not scans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.search.plan import (
    AnyCriterion,
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

TABLE_BY_TYPE = {
    "string": "idx_string",
    "token": "idx_token",
    "reference": "idx_reference",
    "date": "idx_date",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
}

_PREFIX_END = "\U0010ffff"


class Compiler:
    """Accumulates SQL parameters while building one statement."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self._alias_counter = 0

    def _alias(self, stem: str) -> str:
        self._alias_counter += 1
        return f"{stem}{self._alias_counter}"

    def _in(self, values: Sequence[Any]) -> str:
        self.params.extend(values)
        return "(" + ",".join("?" * len(values)) + ")"

    def _pkeys(self, types: Sequence[str], param: str) -> str:
        return self._in([f"{t}.{param}" for t in types])

    def criteria(self, criteria: Sequence[AnyCriterion], types: Sequence[str], alias: str) -> list[str]:
        return [self.criterion(c, types, alias) for c in criteria]

    def criterion(self, c: AnyCriterion, types: Sequence[str], alias: str) -> str:
        if isinstance(c, ChainCriterion):
            return self._chain(c, types, alias)
        if isinstance(c, HasCriterion):
            return self._has(c, types, alias)
        if isinstance(c, CompartmentCriterion):
            return self._compartment(c, alias)
        return self._plain(c, types, alias)

    def _compartment(self, c: CompartmentCriterion, alias: str) -> str:
        pkeys = self._in(c.pkeys)
        self.params.extend([c.compartment_id, c.compartment_type])
        return f"{alias}.pk IN (SELECT pk FROM idx_reference WHERE pkey IN {pkeys} AND target_id = ? AND target_type = ?)"

    def _plain(self, c: Criterion, types: Sequence[str], alias: str) -> str:
        missing = [m for m in c.matches if isinstance(m, MissingMatch)]
        if missing:
            is_missing = missing[0].missing != c.negate
            return f"{alias}.pk {'NOT IN' if is_missing else 'IN'} ({self._present(c, types)})"
        if c.param_type == "composite":
            return self._composite(c, types, alias)
        table = TABLE_BY_TYPE[c.param_type]
        t = self._alias("t")
        pkeys = self._pkeys(types, c.param)
        ors = " OR ".join(self.match(m, c.param_type, t) for m in c.matches)
        sub = f"SELECT {t}.pk FROM {table} {t} WHERE {t}.pkey IN {pkeys} AND ({ors})"
        return f"{alias}.pk {'NOT IN' if c.negate else 'IN'} ({sub})"

    def _present(self, c: Criterion, types: Sequence[str]) -> str:
        """The resources with a value for ``c.param``; a composite's first part may sit in any table."""
        if c.param_type != "composite":
            return f"SELECT pk FROM {TABLE_BY_TYPE[c.param_type]} WHERE pkey IN {self._pkeys(types, c.param)}"
        return " UNION ".join(f"SELECT pk FROM {table} WHERE pkey IN {self._pkeys(types, c.param + '$0')}"
                              for table in dict.fromkeys(TABLE_BY_TYPE.values()))

    def _composite(self, c: Criterion, types: Sequence[str], alias: str) -> str:
        alternatives = []
        for m in c.matches:
            assert isinstance(m, CompositeMatch)
            tables = [TABLE_BY_TYPE[pt] for pt in m.part_types]
            aliases = [self._alias("c") for _ in tables]
            joins = [f"{tables[0]} {aliases[0]}"]
            for i in range(1, len(tables)):
                joins.append(
                    f"JOIN {tables[i]} {aliases[i]} ON {aliases[i]}.pk = {aliases[0]}.pk "
                    f"AND {aliases[i]}.grp = {aliases[0]}.grp"
                )
            conds = []
            for i, (part, part_type) in enumerate(zip(m.parts, m.part_types, strict=True)):
                conds.append(f"{aliases[i]}.pkey IN {self._pkeys(types, f'{c.param}${i}')}")
                conds.append(f"({self.match(part, part_type, aliases[i])})")
            alternatives.append(f"SELECT {aliases[0]}.pk FROM {' '.join(joins)} WHERE {' AND '.join(conds)}")
        sub = " UNION ".join(alternatives)
        return f"{alias}.pk {'NOT IN' if c.negate else 'IN'} ({sub})"

    def _chain(self, c: ChainCriterion, types: Sequence[str], alias: str) -> str:
        x, target = self._alias("x"), self._alias("r")
        pkeys = self._pkeys(types, c.param)
        self.params.append(c.target_type)
        inner = self.criterion(c.inner, (c.target_type,), target)
        return (
            f"{alias}.pk IN (SELECT {x}.pk FROM idx_reference {x} JOIN resource {target} "
            f"ON {target}.type = {x}.target_type AND {target}.id = {x}.target_id "
            f"WHERE {x}.pkey IN {pkeys} AND {x}.target_type = ? AND {target}.deleted = 0 AND {inner})"
        )

    def _has(self, c: HasCriterion, types: Sequence[str], alias: str) -> str:
        x, source = self._alias("x"), self._alias("r")
        self.params.append(f"{c.source_type}.{c.source_param}")
        target_types = self._in(list(types))
        inner = self.criterion(c.inner, (c.source_type,), source)
        return (
            f"{alias}.id IN (SELECT {x}.target_id FROM idx_reference {x} JOIN resource {source} "
            f"ON {source}.pk = {x}.pk WHERE {x}.pkey = ? AND {x}.target_type IN {target_types} "
            f"AND {source}.deleted = 0 AND {inner})"
        )

    def match(self, m: Match, param_type: str, t: str) -> str:
        if isinstance(m, TokenMatch):
            conds = []
            if m.match_code:
                conds.append(f"{t}.code = ?")
                self.params.append(m.code)
            if m.match_system:
                if m.system is None:
                    conds.append(f"{t}.system IS NULL")
                else:
                    conds.append(f"{t}.system = ?")
                    self.params.append(m.system)
            return " AND ".join(conds) or "1"
        if isinstance(m, TokenTextMatch):
            return self._prefix(f"{t}.text", m.text)
        if isinstance(m, StringMatch):
            if m.mode == "exact":
                self.params.append(m.value)
                return f"{t}.exact = ?"
            if m.mode == "contains":
                escaped = m.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                self.params.append(f"%{escaped}%")
                return f"{t}.norm LIKE ? ESCAPE '\\'"
            return self._prefix(f"{t}.norm", m.value)
        if isinstance(m, ReferenceMatch):
            if m.url is not None:
                self.params.append(m.url)
                return f"{t}.url = ?"
            conds = [f"{t}.target_id = ?"]
            self.params.append(m.target_id)
            if m.target_type is not None:
                conds.append(f"{t}.target_type = ?")
                self.params.append(m.target_type)
            if m.local_base is None:
                conds.append(f"{t}.url IS NULL")
            else:
                conds.append(f"({t}.url IS NULL OR ({t}.url >= ? AND {t}.url < ?))")
                self.params.extend([m.local_base, m.local_base + _PREFIX_END])
            return " AND ".join(conds)
        if isinstance(m, UriMatch):
            if m.mode == "below":
                self.params.extend([m.uri, m.uri.rstrip("/") + "/", m.uri.rstrip("/") + "/" + _PREFIX_END])
                return f"({t}.uri = ? OR ({t}.uri >= ? AND {t}.uri < ?))"
            if m.mode == "above":
                self.params.append(m.uri)
                return f"(substr(?1, 1, length({t}.uri)) = {t}.uri)".replace("?1", "?")
            self.params.append(m.uri)
            return f"{t}.uri = ?"
        if isinstance(m, RangeMatch):
            if param_type == "date":
                return self._date_range(m, t)
            cond = self._point_range(m, t)
            if param_type == "quantity":
                if m.code is not None:
                    cond += f" AND {t}.code = ?"
                    self.params.append(m.code)
                if m.system is not None:
                    cond += f" AND {t}.system = ?"
                    self.params.append(m.system)
            return cond
        raise TypeError(f"no SQL for {type(m).__name__}")

    def _prefix(self, column: str, value: str) -> str:
        self.params.extend([value, value + _PREFIX_END])
        return f"({column} >= ? AND {column} < ?)"

    def _date_range(self, m: RangeMatch, t: str) -> str:
        """Stored ``[low, high)`` against the search value's ``[low, high)`` (search.html prefixes)."""
        lo, hi = f"{t}.low", f"{t}.high"
        p = m.prefix
        if p is Prefix.EQ:
            self.params.extend([m.low, m.high])
            return f"({lo} >= ? AND {hi} <= ?)"
        if p is Prefix.NE:
            self.params.extend([m.low, m.high])
            return f"NOT ({lo} >= ? AND {hi} <= ?)"
        if p is Prefix.GT:
            self.params.append(m.high)
            return f"{hi} > ?"
        if p is Prefix.LT:
            self.params.append(m.low)
            return f"{lo} < ?"
        if p is Prefix.GE:  # GT, or contained in the search range
            self.params.extend([m.high, m.low])
            return f"({hi} > ? OR {lo} >= ?)"
        if p is Prefix.LE:  # LT, or contained in the search range
            self.params.extend([m.low, m.high])
            return f"({lo} < ? OR {hi} <= ?)"
        if p is Prefix.SA:
            self.params.append(m.high)
            return f"{lo} >= ?"
        if p is Prefix.EB:
            self.params.append(m.low)
            return f"{hi} <= ?"
        self.params.extend([m.high, m.low])  # AP: overlaps the (already widened) search range
        return f"({lo} < ? AND {hi} > ?)"

    def _point_range(self, m: RangeMatch, t: str) -> str:
        """A stored number against the search value: ``eq`` within its precision range, the
        comparisons against the value itself (the middle of that range)."""
        v = f"{t}.value"
        exact = (m.low + m.high) / 2
        p = m.prefix
        if p in (Prefix.EQ, Prefix.AP):
            self.params.extend([m.low, m.high])
            return f"({v} >= ? AND {v} < ?)"
        if p is Prefix.NE:
            self.params.extend([m.low, m.high])
            return f"NOT ({v} >= ? AND {v} < ?)"
        op = {Prefix.GT: ">", Prefix.SA: ">", Prefix.LT: "<", Prefix.EB: "<", Prefix.GE: ">=", Prefix.LE: "<="}[p]
        self.params.append(exact)
        return f"{v} {op} ?"

    def sort_expression(self, key: SortKey, types: Sequence[str], alias: str) -> str:
        if key.param == "_id":
            return f"{alias}.id"
        if key.param == "_lastUpdated":
            return f"{alias}.last_updated"
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
        pkeys = self._pkeys(types, key.param)
        return f"(SELECT {aggregate}(s.{column}) FROM {table} s WHERE s.pk = {alias}.pk AND s.pkey IN {pkeys})"


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
