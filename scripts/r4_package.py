"""The official R4 package (``npm pack hl7.fhir.r4.examples@4.0.1``, CC0) the generators read."""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

PACKAGE = "hl7.fhir.r4.examples@4.0.1"
VERSION = PACKAGE.rsplit("@", 1)[1]


def package_dir(source: Path | None, scratch: Path, wanted: Callable[[str], bool]) -> Path:
    """The unpacked package directory: ``source`` itself when it is one; else the files of the
    ``source`` archive (or of a fresh ``npm pack`` into ``scratch``) whose names pass ``wanted``,
    extracted into ``scratch``."""
    if source is not None and source.is_dir():
        return source
    if source is None:
        subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=scratch, check=True, capture_output=True)
        source = next(scratch.glob("*.tgz"))
    with tarfile.open(source) as archive:
        members = [m for m in archive.getmembers() if wanted(m.name.removeprefix("package/"))]
        archive.extractall(scratch, members=members, filter="data")
    return scratch / "package"
