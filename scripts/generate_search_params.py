"""Generate ``fhir_server/search/search_parameters_r4.json`` from the official R4 definitions.

Regenerate (from the repository root; needs npm and network, or a local copy of the package):

    python -m scripts.generate_search_params
    python -m scripts.generate_search_params --source /path/to/hl7.fhir.r4.examples-4.0.1.tgz
    python -m scripts.generate_search_params --source /path/to/package/Bundle-searchParams.json

Without ``--source`` the script runs ``npm pack hl7.fhir.r4.examples@4.0.1`` in a temporary
directory. A ``Bundle-searchParams.json`` source must sit in the unpacked package directory, because
the element types come from the ``StructureDefinition-*.json`` files beside it.

The output is compact JSON with short keys:

- ``v``: FHIR version; ``t``: every resource type (R4, plus the R4B types our validator accepts);
- ``p``: ``{base type: [[code, type, expression, targets, components], ...]}`` where the expression
  keeps only the ``|`` branches for that base, ``Resource`` holds the parameters of every type,
  targets ``["*"]`` means any resource type, and components are ``[code, type, expression relative
  to the composite's element]`` (trailing empty lists are left out);
- ``e``: the element types the expressions touch (``{owner: {element: type}}``, choices as
  ``name[x]: [types]``), so the runtime compiler knows ``Observation.value`` means ``valueQuantity``...;
- ``u``: ``[[base, code, reason], ...]``: parameters we cannot index, left out of ``p``.

Every kept expression is compiled here with ``fhir_server.search.fhirpath`` and its result types are
checked against the converters of ``fhir_server.search.extract``: what does not compile or cannot
yield an index value goes to ``u`` instead of failing (or silently indexing nothing) at run time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fhir_server.search.extract import SCALAR_CONVERTERS
from fhir_server.search.fhirpath import RESOURCE_BASES, FhirPathError, branches, compile_path

PACKAGE = "hl7.fhir.r4.examples@4.0.1"
BUNDLE = "Bundle-searchParams.json"
OUTPUT = Path(__file__).resolve().parent.parent / "fhir_server" / "search" / "search_parameters_r4.json"
_SYSTEM_TYPES = {"String": "string", "Boolean": "boolean", "Integer": "integer", "Decimal": "decimal",
                 "Date": "date", "DateTime": "dateTime", "Time": "time"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="the npm package .tgz, or its unpacked Bundle-searchParams.json")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        package_dir = _package_dir(args.source, Path(scratch))
        data = build(package_dir)
    args.output.write_bytes(dumps(data))
    print(f"wrote {args.output}: {sum(len(v) for v in data['p'].values())} parameters, "
          f"{len(data['u'])} unsupported")


def dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _package_dir(source: Path | None, scratch: Path) -> Path:
    if source is not None and source.suffix == ".json":
        return source.parent
    if source is None:
        subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=scratch, check=True, capture_output=True)
        source = next(scratch.glob("*.tgz"))
    with tarfile.open(source) as archive:
        wanted = [m for m in archive.getmembers()
                  if m.name == f"package/{BUNDLE}" or m.name.startswith("package/StructureDefinition-")]
        archive.extractall(scratch, members=wanted, filter="data")
    return scratch / "package"


def build(package_dir: Path) -> dict[str, Any]:
    """The registry data from an unpacked package directory."""
    bundle = json.loads((package_dir / BUNDLE).read_bytes())
    definitions = [entry["resource"] for entry in bundle["entry"]]
    element_types, r4_types = _element_types(package_dir)
    recorder = _Recorder(element_types)
    by_url = {d["url"]: d for d in definitions}
    params: dict[str, dict[str, list[Any]]] = {}
    unsupported: list[list[str]] = []
    for definition in definitions:
        for base in sorted({_base_key(b) for b in definition["base"]}):
            row = _param_row(definition, base, by_url, recorder, r4_types)
            if isinstance(row, str):
                unsupported.append([base, definition["code"], row])
            else:
                params.setdefault(base, {})[definition["code"]] = row
    types = sorted((r4_types | _r4b_resource_types()) - RESOURCE_BASES)
    return {
        "v": PACKAGE.rsplit("@", 1)[1],
        "t": types,
        "p": {base: [rows[code] for code in sorted(rows)] for base, rows in sorted(params.items())},
        "e": {owner: dict(sorted(used.items())) for owner, used in sorted(recorder.used.items()) if used},
        "u": sorted(unsupported),
    }


def _base_key(base: str) -> str:
    return "Resource" if base in RESOURCE_BASES else base


def _param_row(definition: dict[str, Any], base: str, by_url: Mapping[str, dict[str, Any]],
               recorder: _Recorder, resource_types: set[str]) -> list[Any] | str:
    """The compact row for ``definition`` on ``base``, or the reason it cannot be indexed. Targets
    naming every resource type (a reference to ``Any``) are written as ``["*"]``."""
    if not definition.get("expression"):
        return "no FHIRPath expression"
    if definition["type"] == "special":
        return "special parameter type (needs a dedicated implementation)"
    single_base = len(definition["base"]) == 1
    expression = " | ".join(b for b in branches(definition["expression"])
                            if _branch_type(b) == base or (single_base and not _branch_type(b)))
    if not expression:
        return f"no expression branch for {base}"
    try:
        compiled = compile_path(expression, base, recorder)
        components = [_component(c, compiled.types, base, by_url, recorder)
                      for c in definition.get("component", ())]
    except FhirPathError as error:
        return f"unsupported expression: {error}"
    if definition["type"] != "composite" and not compiled.types & SCALAR_CONVERTERS[definition["type"]].keys():
        return f"no {definition['type']} index for values of type {', '.join(sorted(compiled.types))}"
    targets = set(definition.get("target", ()))
    row: list[Any] = [definition["code"], definition["type"], expression,
                      ["*"] if targets >= resource_types - {"Parameters"} else sorted(targets)]
    if components:
        row.append(components)
    elif not row[3]:
        row.pop()
    return row


def _component(component: dict[str, Any], element_types: frozenset[str], base: str,
               by_url: Mapping[str, dict[str, Any]], recorder: _Recorder) -> list[str]:
    definition = by_url[component["definition"]]
    for element_type in element_types:
        compiled = compile_path(component["expression"], element_type, recorder, resource_type=base)
        if not compiled.types & SCALAR_CONVERTERS[definition["type"]].keys():
            raise FhirPathError(f"component {definition['code']} ({definition['type']}) cannot be read from "
                                f"{component['expression']} ({', '.join(sorted(compiled.types))})")
    return [definition["code"], definition["type"], component["expression"]]


def _branch_type(branch: str) -> str:
    """The type a branch starts from; "" for a relative path (InsurancePlan's ``name | alias``)."""
    match = re.match(r"[\s(]*([A-Z][A-Za-z]*)", branch)
    return _base_key(match.group(1)) if match else ""


def _element_types(package_dir: Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """``{owner: {element: type}}`` for every resource and data type, plus the R4 resource types."""
    table: dict[str, dict[str, Any]] = {}
    resource_types: set[str] = set()
    for path in package_dir.glob("StructureDefinition-*.json"):
        definition = json.loads(path.read_bytes())
        if definition.get("derivation") == "constraint" or definition.get("kind") == "logical":
            continue
        if definition["kind"] == "resource" and not definition.get("abstract"):
            resource_types.add(definition["type"])
        elements = definition["snapshot"]["element"]
        owners = {e["path"].rsplit(".", 1)[0] for e in elements if "." in e["path"]}
        for element in elements:
            owner, _, name = element["path"].rpartition(".")
            if owner:
                table.setdefault(owner, {})[name] = _element_type(element, owners)
    return table, resource_types


def _element_type(element: dict[str, Any], owners: set[str]) -> str | list[str]:
    if "contentReference" in element:
        return str(element["contentReference"]).lstrip("#")
    names = [_type_name(t) for t in element.get("type", ())]
    if element["path"].endswith("[x]"):
        return names
    if names[0] in ("BackboneElement", "Element") and element["path"] in owners:
        return str(element["path"])
    return names[0]


def _type_name(type_ref: dict[str, Any]) -> str:
    code: str = type_ref["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for extension in type_ref.get("extension", ()):
            if extension["url"].endswith("structuredefinition-fhir-type"):
                return str(extension["valueUrl"])
        return _SYSTEM_TYPES[code.rsplit(".", 1)[1]]
    return code


def _r4b_resource_types() -> set[str]:
    """Resource types the R4B models (our validator) know: they must all be searchable by the
    ``Resource`` parameters even where R4 defines nothing more for them."""
    import fhir.resources.R4B as r4b
    from fhir.resources.R4B.resource import Resource

    names: set[str] = set()
    for module_info in pkgutil.iter_modules(r4b.__path__):
        module = importlib.import_module(f"{r4b.__name__}.{module_info.name}")
        for name, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, Resource) and value.__module__ == module.__name__
                    and name.lower() == module_info.name):
                names.add(name)
    return names


class _Recorder(Mapping[str, Mapping[str, Any]]):
    """The full element-type table, noting which entries the compiler reads, so the output keeps only
    those."""

    def __init__(self, table: dict[str, dict[str, Any]]) -> None:
        self.table = table
        self.used: dict[str, dict[str, Any]] = {}

    def __getitem__(self, owner: str) -> Mapping[str, Any]:
        return _OwnerRecorder(self.table[owner], self.used.setdefault(owner, {}))

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)


class _OwnerRecorder(Mapping[str, Any]):
    def __init__(self, elements: dict[str, Any], used: dict[str, Any]) -> None:
        self.elements = elements
        self.used = used

    def __getitem__(self, name: str) -> Any:
        value = self.elements[name]
        self.used[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.elements)

    def __len__(self) -> int:
        return len(self.elements)


if __name__ == "__main__":
    main()
