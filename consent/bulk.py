"""Bulk enrollment from a CSV file: each row through the same enrollment service as the API, with
a per-row outcome (created, updated, unchanged or rejected with the reason). Re-running a file is
safe: people already enrolled are found again, not enrolled twice."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from consent.enrollment import EnrollmentError, EnrollmentService
from consent.errors import AuthError
from consent.tokens import Principal
from fhir_server.errors import FhirError
from mappings.enrollment import COLUMNS, RowError

# header spellings seen in clinic spreadsheets → our column names
ALIASES = {"birthdate": "birth_date", "dob": "birth_date", "date_of_birth": "birth_date", "sex": "gender",
           "phone": "mobile", "mobile_number": "mobile", "abha_address": "address", "phr_address": "address",
           "abha_number": "health_id", "healthid": "health_id", "mrn": "external_id", "patient_id": "external_id"}
REPORT_COLUMNS = ("line", "outcome", "health_id", "resource", "reason")


@dataclass(frozen=True, slots=True)
class RowOutcome:
    line: int  # line number in the file (the header is line 1)
    outcome: str  # created | updated | unchanged | rejected
    health_id: str = ""
    resource: str = ""
    reason: str = ""  # why a row was rejected, or its warnings


def column_name(header: str) -> str:
    name = "_".join(header.strip().lower().replace("-", " ").split())
    return ALIASES.get(name, name)


def read_rows(text: str) -> list[tuple[int, dict[str, str]]]:
    """The rows with their line numbers; raises ValueError when the header lacks a required column."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is None:
        raise ValueError("the CSV file is empty")
    names = [column_name(h) for h in reader.fieldnames]
    missing = [c for c in ("name", "gender", "birth_date", "mobile") if c not in names]
    if missing:
        raise ValueError(f"the CSV header lacks {', '.join(missing)} (columns: {', '.join(COLUMNS)})")
    rows = []
    for row in reader:
        values = {column_name(k): (v or "") for k, v in row.items() if k is not None}
        if any(v.strip() for v in values.values()):
            rows.append((reader.line_num, values))
    return rows


def enroll_rows(service: EnrollmentService, operator: Principal, rows: Iterable[tuple[int, dict[str, str]]],
                facility_id: str) -> Iterator[RowOutcome]:
    for line, row in rows:
        try:
            result = service.enroll_row(operator, row, facility_id)
        except (RowError, EnrollmentError, AuthError) as error:
            yield RowOutcome(line, "rejected", reason=str(error))
        except FhirError as error:
            yield RowOutcome(line, "rejected", reason="; ".join(i.diagnostics for i in error.issues))
        else:
            yield RowOutcome(line, result.outcome, result.health_id.formatted, result.resource,
                             "; ".join(result.warnings))


def write_report(outcomes: Iterable[RowOutcome], out: io.TextIOBase) -> None:
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for o in outcomes:
        writer.writerow((o.line, o.outcome, o.health_id, o.resource, o.reason))
