"""A compiler for the FHIRPath subset that the official R4 search parameter expressions use.

Search indexing evaluates ~40 expressions per resource on the write path, so each expression is
parsed and type-checked once and turned into nested closures over plain JSON (``dict``/``list``/
scalars as orjson returns them). Types are resolved statically from the element-type table that the
generator derived from the R4 StructureDefinitions: that is how ``Observation.value`` becomes the
JSON keys ``valueQuantity``, ``valuePeriod``, ... and how every result carries its FHIR type name,
which index extraction needs (a ``ContactPoint`` and an ``Identifier`` look alike as JSON).

Supported: paths, choice elements, ``|``, ``(...)``, ``as T`` / ``as(T)`` / ``ofType(T)``, ``is T``,
``where(...)``, ``resolve()`` (only as a type test: it reports the reference's ``Type/id`` type and
never fetches), ``exists()``, ``first()``, ``[n]``, ``=`` / ``!=`` against values, ``and``, string,
boolean and integer literals, and ``%resource``. Anything else raises ``FhirPathError`` at compile
time, which is how unsupported search parameters are detected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

Item = tuple[Any, str]
"""A JSON value and its FHIR type name (``"HumanName"``, ``"dateTime"``, ``"Observation.component"``)."""

Evaluator = Callable[[list[Item], Any], list[Item]]
"""Compiled form of an expression: ``(input items, the resource) -> output items``."""

ElementTypes = Mapping[str, Mapping[str, "str | list[str]"]]
"""``{owner type: {element: type}}``; a choice element is keyed ``name[x]`` with its list of types.
Backbone elements are owner types named by their path (``"Observation.component"``)."""

RESOURCE_BASES = frozenset({"Resource", "DomainResource"})

_TRUE: list[Item] = [(True, "boolean")]
_FALSE: list[Item] = [(False, "boolean")]


class FhirPathError(ValueError):
    """The expression is outside the supported subset or does not fit the element types."""


@dataclass(frozen=True, slots=True)
class CompiledPath:
    """An expression compiled for one context type; ``types`` are the FHIR types it can return.

    ``roots`` are the JSON keys of the context value of which at least one must be present for a
    non-empty result (None when no such keys exist, as for ``exists()``): most parameters of a
    resource find nothing, and checking a key is much cheaper than evaluating."""

    expression: str
    context_type: str
    types: frozenset[str]
    evaluate: Evaluator
    roots: tuple[str, ...] | None

    def __call__(self, value: Any, resource: Any = None) -> list[Item]:
        return self.evaluate([(value, self.context_type)], value if resource is None else resource)


def compile_path(expression: str, context_type: str, element_types: ElementTypes, *,
                 resource_type: str | None = None) -> CompiledPath:
    """Compile ``expression`` for values of ``context_type``; ``resource_type`` (default: the context
    type) is the type of ``%resource`` and of a leading type name such as ``Patient.``."""
    node = _Parser(expression).parse()
    compiler = _Compiler(element_types, resource_type or context_type)
    code = compiler.compile(node, frozenset({context_type}), at_root=True)
    return CompiledPath(expression, context_type, code.types, code.evaluate, code.roots)


# --- parsing -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<num>\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)
  | (?P<var>%[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>!=|[.()\[\]|=,])
)""", re.VERBOSE)

_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "/": "/", "`": "`", "n": "\n", "r": "\r", "t": "\t", "f": "\f"}

Node = tuple[Any, ...]
"""AST: ``("member", base, name)``, ``("call", base, name, args)``, ``("index", base, n)``,
``("union", a, b)``, ``("and", a, b)``, ``("eq", negate, a, b)``, ``("as", base, type)``,
``("is", base, type)``, ``("literal", value, type)``, ``("resource",)``; a ``base`` of None is the
current input."""


def branches(expression: str) -> Iterator[str]:
    """The top-level ``|`` branches of an expression (not those inside parentheses or strings)."""
    depth, start, quoted = 0, 0, False
    for position, char in enumerate(expression):
        if char == "'" and (position == 0 or expression[position - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        elif not quoted and depth == 0 and char == "|":
            yield expression[start:position].strip()
            start = position + 1
    yield expression[start:].strip()


def _tokenize(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    end = len(expression.rstrip())
    while position < end:
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise FhirPathError(f"cannot read {expression[position:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent in FHIRPath precedence order: and < (= !=) < | < (is as) < invocation."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.position = 0

    def parse(self) -> Node:
        node = self._and()
        if self.position != len(self.tokens):
            raise FhirPathError(f"unexpected {self.tokens[self.position][1]!r} in {self.expression!r}")
        return node

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.position] if self.position < len(self.tokens) else ("end", "")

    def _take(self, text: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token[0] == "end" or (text is not None and token[1] != text):
            raise FhirPathError(f"expected {text or 'more'!r} in {self.expression!r}")
        self.position += 1
        return token

    def _and(self) -> Node:
        node = self._equality()
        while self._peek() == ("name", "and"):
            self._take()
            node = ("and", node, self._equality())
        return node

    def _equality(self) -> Node:
        node = self._union()
        if self._peek()[1] in ("=", "!="):
            negate = self._take()[1] == "!="
            node = ("eq", negate, node, self._union())
        return node

    def _union(self) -> Node:
        node = self._type_test()
        while self._peek()[1] == "|":
            self._take()
            node = ("union", node, self._type_test())
        return node

    def _type_test(self) -> Node:
        node = self._invocations()
        if self._peek() in (("name", "as"), ("name", "is")):
            operator = self._take()[1]
            node = (operator, node, self._type_name())
        return node

    def _type_name(self) -> str:
        kind, text = self._take()
        if kind != "name":
            raise FhirPathError(f"expected a type name in {self.expression!r}")
        while self._peek()[1] == "." and self.position + 1 < len(self.tokens) \
                and self.tokens[self.position + 1][0] == "name":
            self._take()
            text = self._take()[1]  # "FHIR.Patient" / "System.String": the namespace adds nothing here
        return text.strip("`")

    def _invocations(self) -> Node:
        node = self._term()
        while True:
            if self._peek()[1] == ".":
                self._take()
                node = self._invocation(node)
            elif self._peek()[1] == "[":
                self._take()
                kind, text = self._take()
                if kind != "num":
                    raise FhirPathError(f"only integer indexes are supported in {self.expression!r}")
                self._take("]")
                node = ("index", node, int(text))
            else:
                return node

    def _term(self) -> Node:
        kind, text = self._peek()
        if text == "(":
            self._take()
            node = self._and()
            self._take(")")
            return node
        if kind == "str":
            self._take()
            body = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])
            return ("literal", body, "string")
        if kind == "num":
            self._take()
            return ("literal", int(text), "integer")
        if kind == "name" and text in ("true", "false"):
            self._take()
            return ("literal", text == "true", "boolean")
        if kind == "var":
            self._take()
            if text != "%resource":
                raise FhirPathError(f"unsupported variable {text} in {self.expression!r}")
            return ("resource",)
        return self._invocation(None)

    def _invocation(self, base: Node | None) -> Node:
        kind, name = self._take()
        if kind != "name":
            raise FhirPathError(f"expected a name, got {name!r} in {self.expression!r}")
        name = name.strip("`")
        if self._peek()[1] != "(":
            return ("member", base, name)
        self._take("(")
        if name in ("as", "is", "ofType"):
            type_name = self._type_name()
            self._take(")")
            return ("is" if name == "is" else "as", base, type_name)
        args: list[Node] = []
        if self._peek()[1] != ")":
            args.append(self._and())
            while self._peek()[1] == ",":
                self._take()
                args.append(self._and())
        self._take(")")
        return ("call", base, name, tuple(args))


# --- compiling ---------------------------------------------------------------------------------

class _Code(NamedTuple):
    """A compiled sub-expression. ``keys`` is set when it only walks JSON keys from its input (one
    key per step, one result type), so the next member step can extend the walk instead of adding a
    call and an intermediate list per step."""

    evaluate: Evaluator
    types: frozenset[str]
    keys: tuple[str, ...] | None = None
    roots: tuple[str, ...] | None = None  # see CompiledPath.roots


def _identity(items: list[Item], resource: Any) -> list[Item]:
    return items


class _Compiler:
    def __init__(self, element_types: ElementTypes, resource_type: str) -> None:
        self.element_types = element_types
        self.resource_type = resource_type

    def compile(self, node: Node, types: frozenset[str], *, at_root: bool = False) -> _Code:
        kind = node[0]
        if kind == "member":
            return self._member(node, types, at_root, only=None)
        if kind == "as":
            return self._as(node, types, at_root)
        if kind == "is":
            return self._is(node, types, at_root)
        if kind == "call":
            return self._call(node, types, at_root)
        if kind == "index":
            base = self._base(node[1], types, at_root)
            inner, position = base.evaluate, node[2]
            return _Code(lambda items, resource: inner(items, resource)[position:position + 1], base.types,
                         roots=base.roots)
        if kind == "union":
            left = self.compile(node[1], types, at_root=at_root)
            right = self.compile(node[2], types, at_root=at_root)
            first, second = left.evaluate, right.evaluate
            roots = None if left.roots is None or right.roots is None else (*left.roots, *right.roots)
            return _Code(lambda items, resource: first(items, resource) + second(items, resource),
                         left.types | right.types, roots=roots)
        if kind == "and":
            return self._and(node, types, at_root)
        if kind == "eq":
            return self._equals(node, types, at_root)
        if kind == "literal":
            constant = [(node[1], node[2])]
            return _Code(lambda items, resource: constant, frozenset({node[2]}))
        if kind == "resource":
            root_type = self.resource_type
            return _Code(lambda items, resource: [(resource, root_type)], frozenset({root_type}))
        raise FhirPathError(f"unsupported FHIRPath construct {kind!r}")

    def _base(self, node: Node | None, types: frozenset[str], at_root: bool) -> _Code:
        return _Code(_identity, types, ()) if node is None else self.compile(node, types, at_root=at_root)

    def _member(self, node: Node, types: frozenset[str], at_root: bool, only: str | None) -> _Code:
        _, base_node, name = node
        if base_node is None and at_root and name[:1].isupper():
            return self._type_prefix(name, types, only)
        base = self._base(base_node, types, at_root)
        routes = {owner: self._routes(owner, name, only) for owner in base.types}
        out_types = frozenset(t for route in routes.values() for _, t in route)
        if not out_types:
            raise FhirPathError(f"{name!r} has no type {only!r} on {sorted(base.types)}")
        keys = tuple(sorted({key for route in routes.values() for key, _ in route}))
        roots = keys if base.keys == () else base.roots
        if len(out_types) == 1 and len(keys) == 1 and base.keys is not None:
            walk = (*base.keys, *keys)
            return _Code(_walk(walk, next(iter(out_types))), out_types, walk, roots)
        step, inner = _routed_step(routes), base.evaluate
        if inner is _identity:
            return _Code(step, out_types, roots=roots)
        return _Code(lambda items, resource: step(inner(items, resource), resource), out_types, roots=roots)

    def _type_prefix(self, name: str, types: frozenset[str], only: str | None) -> _Code:
        """A leading ``Patient.`` (or ``Resource.``) names the context's type rather than an element."""
        if only is not None or not (name in types or name in RESOURCE_BASES):
            raise FhirPathError(f"expression for {name} cannot apply to {sorted(types)}")
        if name in RESOURCE_BASES and types != {name}:
            return _Code(lambda items, resource: [(value, name) for value, _ in items], frozenset({name}), ())
        return _Code(_identity, types, ())

    def _routes(self, owner: str, name: str, only: str | None) -> list[tuple[str, str]]:
        """The JSON keys and FHIR types of element ``name`` on ``owner`` (several for a choice)."""
        elements = self.element_types.get(owner)
        if elements is None:
            raise FhirPathError(f"no element types known for {owner!r}")
        element_type = elements.get(name)
        if element_type is not None:
            if only is not None and only.lower() != str(element_type).lower():
                return []
            return [(name, str(element_type))]
        choices = elements.get(name + "[x]")
        if choices is None:
            raise FhirPathError(f"{owner} has no element {name!r}")
        if only is not None:
            choices = [t for t in choices if t.lower() == only.lower()]
        return [(name + t[0].upper() + t[1:], t) for t in choices]

    def _as(self, node: Node, types: frozenset[str], at_root: bool) -> _Code:
        _, base_node, type_name = node
        if base_node is not None and base_node[0] == "member":
            return self._member(base_node, types, at_root, only=type_name)
        base = self._base(base_node, types, at_root)
        wanted, inner = type_name.lower(), base.evaluate
        kept = frozenset(t for t in base.types if t.lower() == wanted)
        if not kept:
            raise FhirPathError(f"{type_name} is not among {sorted(base.types)}")
        return _Code(lambda items, resource: [i for i in inner(items, resource) if i[1].lower() == wanted], kept,
                     roots=base.roots)

    def _is(self, node: Node, types: frozenset[str], at_root: bool) -> _Code:
        base, type_name = self._base(node[1], types, at_root).evaluate, node[2]

        def is_type(items: list[Item], resource: Any) -> list[Item]:
            found = base(items, resource)
            if len(found) != 1:
                return []
            return _TRUE if found[0][1] == type_name else _FALSE

        return _Code(is_type, frozenset({"boolean"}))

    def _call(self, node: Node, types: frozenset[str], at_root: bool) -> _Code:
        _, base_node, name, args = node
        base = self._base(base_node, types, at_root)
        inner = base.evaluate
        if name == "where" and len(args) == 1:
            return self._where(base, args[0])
        if args:
            raise FhirPathError(f"unsupported function {name}() with arguments")
        if name == "resolve":
            if not base.types <= {"Reference", "canonical", "uri"}:
                raise FhirPathError(f"resolve() on {sorted(base.types)}")
            return _Code(lambda items, resource: [(v, _referenced_type(v)) for v, _ in inner(items, resource)],
                         frozenset({"Resource"}), roots=base.roots)
        if name == "exists":
            return _Code(lambda items, resource: _TRUE if inner(items, resource) else _FALSE, frozenset({"boolean"}))
        if name == "first":
            return _Code(lambda items, resource: inner(items, resource)[:1], base.types, roots=base.roots)
        raise FhirPathError(f"unsupported function {name}()")

    def _where(self, base: _Code, criterion: Node) -> _Code:
        inner = base.evaluate
        if criterion[0] == "is" and criterion[1] == ("call", None, "resolve", ()) and base.types <= {"Reference"}:
            target = criterion[2]  # the common `where(resolve() is Patient)`: one test, no nested calls
            return _Code(lambda items, resource: [i for i in inner(items, resource)
                                                  if _referenced_type(i[0]) == target], base.types, roots=base.roots)
        if criterion[0] == "eq" and not criterion[1] and criterion[3][0] == "literal":
            left = self.compile(criterion[2], base.types)
            if left.keys is not None and len(left.keys) == 1:
                key, wanted = left.keys[0], criterion[3][1]  # `where(system = 'phone')`: one lookup per item
                return _Code(lambda items, resource: [i for i in inner(items, resource) if i[0].get(key) == wanted],
                             base.types, roots=base.roots)
        test = self.compile(criterion, base.types).evaluate
        return _Code(lambda items, resource: [i for i in inner(items, resource) if test([i], resource) == _TRUE],
                     base.types, roots=base.roots)

    def _and(self, node: Node, types: frozenset[str], at_root: bool) -> _Code:
        left = self.compile(node[1], types, at_root=at_root).evaluate
        right = self.compile(node[2], types, at_root=at_root).evaluate

        def both(items: list[Item], resource: Any) -> list[Item]:
            a, b = _truth(left(items, resource)), _truth(right(items, resource))
            if a is False or b is False:
                return _FALSE
            return _TRUE if a is True and b is True else []

        return _Code(both, frozenset({"boolean"}))

    def _equals(self, node: Node, types: frozenset[str], at_root: bool) -> _Code:
        _, negate, left_node, right_node = node
        left = self.compile(left_node, types, at_root=at_root).evaluate
        right = self.compile(right_node, types, at_root=at_root).evaluate

        def equals(items: list[Item], resource: Any) -> list[Item]:
            a, b = left(items, resource), right(items, resource)
            if not a or not b:
                return []
            same = len(a) == len(b) and all(_equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
            return _TRUE if same != negate else _FALSE

        return _Code(equals, frozenset({"boolean"}))


def _walk(keys: tuple[str, ...], out_type: str) -> Evaluator:
    """Follow ``keys`` through dicts and lists; one closure for a whole ``a.b.c`` path."""
    if len(keys) == 1:
        key = keys[0]

        def step(items: list[Item], resource: Any) -> list[Item]:
            out: list[Item] = []
            for value, _ in items:
                if value.__class__ is dict and (found := value.get(key)) is not None:
                    if found.__class__ is list:
                        out += [(v, out_type) for v in found if v is not None]
                    else:
                        out.append((found, out_type))
            return out

        return step

    def walk(items: list[Item], resource: Any) -> list[Item]:
        current = [value for value, _ in items]
        for key in keys:
            found_values: list[Any] = []
            for value in current:
                if value.__class__ is dict and (found := value.get(key)) is not None:
                    if found.__class__ is list:
                        found_values += found
                    else:
                        found_values.append(found)
            if not found_values:
                return []
            current = found_values
        return [(value, out_type) for value in current if value is not None]

    return walk


def _routed_step(routes: dict[str, list[tuple[str, str]]]) -> Evaluator:
    """A member step whose key and result type depend on the input's type (choice elements)."""

    def step(items: list[Item], resource: Any) -> list[Item]:
        out: list[Item] = []
        for value, owner in items:
            if value.__class__ is not dict:
                continue
            for key, out_type in routes.get(owner, ()):
                found = value.get(key)
                if found is None:
                    continue
                if found.__class__ is list:
                    out += [(v, out_type) for v in found if v is not None]
                else:
                    out.append((found, out_type))
        return out

    return step


def _referenced_type(value: Any) -> str:
    """The resource type a reference points at, read from its ``Type/id`` (or URL) form."""
    reference = value.get("reference") if value.__class__ is dict else value
    if not isinstance(reference, str) or reference.startswith("#"):
        return ""
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-2] if len(parts) >= 2 else ""


def _truth(items: list[Item]) -> bool | None:
    if len(items) != 1:
        return None if not items else True
    value = items[0][0]
    return value if value.__class__ is bool else True


def _equal(a: Any, b: Any) -> bool:
    """FHIRPath equality: a boolean never equals a number (Python's ``True == 1`` does not apply)."""
    return (a.__class__ is bool) == (b.__class__ is bool) and bool(a == b)
