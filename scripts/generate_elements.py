"""Generate ``fhir_server/resources/elements_r4.json`` (what ``_summary`` and ``_elements`` keep) from
the official R4 StructureDefinitions.

Regenerate (from the repository root; needs npm and network, or a local copy of the package):

    python -m scripts.generate_elements
    python -m scripts.generate_elements --source /path/to/hl7.fhir.r4.examples-4.0.1.tgz
    python -m scripts.generate_elements --source /path/to/unpacked/package

The output is compact JSON, ``{"v": version, "t": {type: {"s": summary, "m": [mandatory top-level
elements], "x": [top-level choice elements without "[x]"]}}}`` for every resource type, where
``summary`` maps each element marked ``isSummary`` to ``1`` (keep it whole) or, for a backbone
element whose own children are only partly summary, to the same kind of map of those children.
Choice elements keep their ``[x]`` suffix.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scripts.r4_package import VERSION, package_dir

OUTPUT = Path(__file__).resolve().parent.parent / "fhir_server" / "resources" / "elements_r4.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="the npm package .tgz, or the unpacked package directory")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        data = build(package_dir(args.source, Path(scratch), lambda name: name.startswith("StructureDefinition-")))
    args.output.write_bytes(dumps(data))
    print(f"wrote {args.output}: {len(data['t'])} resource types")


def dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode() + b"\n"


def build(package_dir: Path) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for path in sorted(package_dir.glob("StructureDefinition-*.json")):
        definition = json.loads(path.read_bytes())
        if (definition.get("kind") != "resource" or definition.get("abstract")
                or definition.get("derivation") != "specialization"):
            continue
        elements = definition["snapshot"]["element"]
        by_path = {e["path"]: e for e in elements}
        root = definition["type"]
        top = [e for e in elements if e["path"].count(".") == 1]
        types[root] = {
            "s": _summary(root, by_path),
            "m": sorted(_name(e) for e in top if e.get("min", 0) >= 1),
            "x": sorted(_name(e)[:-3] for e in top if e["path"].endswith("[x]")),
        }
    return {"v": VERSION, "t": types}


def _name(element: dict[str, Any]) -> str:
    return str(element["path"]).rsplit(".", 1)[1]


def _summary(path: str, by_path: Mapping[str, dict[str, Any]], within: frozenset[str] = frozenset()
             ) -> dict[str, Any]:
    """The summary elements under ``path``: whole (1) unless they are backbone elements whose
    children are only partly summary. A recursive element (``Questionnaire.item.item``) is kept whole."""
    within = within | {path}
    summary: dict[str, Any] = {}
    for child_path, child in by_path.items():
        if child_path.rsplit(".", 1)[0] != path or child_path == path or not child.get("isSummary"):
            continue
        target = str(child["contentReference"]).lstrip("#") if "contentReference" in child else child_path
        children = [p for p in by_path if p.rsplit(".", 1)[0] == target and p != target]
        if target in within:
            summary[_name(child)] = 1
            continue
        nested = _summary(target, by_path, within) if children else {}
        partial = nested and len(nested) < len(children)
        summary[_name(child)] = nested if partial else 1
    return summary


if __name__ == "__main__":
    main()
