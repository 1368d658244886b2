"""Generate ``fhir_server/search/compartments_r4.json`` from the official R4 CompartmentDefinitions.

Regenerate (from the repository root; needs npm and network, or a local copy of the package):

    python -m scripts.generate_compartments
    python -m scripts.generate_compartments --source /path/to/hl7.fhir.r4.examples-4.0.1.tgz
    python -m scripts.generate_compartments --source /path/to/unpacked/package

The output maps each compartment (``Patient``, ``Encounter``, ``RelatedPerson``, ``Practitioner``,
``Device``) to ``{resource type: [search parameter codes]}``: a resource is in the compartment of
``Patient/123`` when any of those reference parameters points at it. Types the definition lists
without parameters can never be members and are left out. ``{def}`` (the compartment's own
resource) is kept as the definition writes it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from scripts.r4_package import package_dir

COMPARTMENTS = ("patient", "encounter", "relatedPerson", "practitioner", "device")
OUTPUT = Path(__file__).resolve().parent.parent / "fhir_server" / "search" / "compartments_r4.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="the npm package .tgz, or the unpacked package directory")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        names = {f"CompartmentDefinition-{c}.json" for c in COMPARTMENTS}
        args.output.write_bytes(dumps(build(package_dir(args.source, Path(scratch), names.__contains__))))


def build(package_dir: Path) -> dict[str, dict[str, list[str]]]:
    result: dict[str, dict[str, list[str]]] = {}
    for name in COMPARTMENTS:
        definition = json.loads((package_dir / f"CompartmentDefinition-{name}.json").read_bytes())
        result[definition["code"]] = {r["code"]: list(r["param"]) for r in definition["resource"] if r.get("param")}
    return result


def dumps(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"


if __name__ == "__main__":
    main()
