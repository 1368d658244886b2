"""The ``fhir-server enroll`` and ``fhir-server create-admin`` commands."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from consent.store import open_identity_store
from fhir_server.app import create_app
from fhir_server.cli import main
from fhir_server.settings import Settings
from mappings.abdm import HEALTH_ID_SYSTEM
from tests.conftest import authorize

CSV = """Name,Gender,Birth Date,Mobile,Role,ABHA Address,Health ID,External ID
Asha Sharma,F,5/9/1980,98765 43210,patient,asha.sharma@abdm,,NCD-1
Ravi Kumar,male,1975-01-02,9876543211,practitioner,,,
Sunita Devi,female,1962,+91 9876543212,,,91-5006-4247-3341,NCD-2
No Gender,,1970,9876543213,,,,
Bad Mobile,male,1970,12345,,,,
Bad Date,male,31/31/1970,9876543214,,,,
Bad Id,male,1970,9876543215,,,12-3456,
"""


@pytest.fixture
def store_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/fhir.db"


@pytest.fixture
def facility(store_file: str) -> str:
    with TestClient(create_app(Settings(store_url=store_file))) as client:
        authorize(client)
        return client.post("/Organization", json={"resourceType": "Organization", "name": "PHC"}).json()["id"]


def _run(store_file: str, tmp_path: Path, facility: str, text: str = CSV) -> tuple[int, str, list[dict]]:
    (tmp_path / "rows.csv").write_text(text, encoding="utf-8")
    report = tmp_path / "report.csv"
    result = CliRunner().invoke(main, ["enroll", "--csv", str(tmp_path / "rows.csv"), "--facility", facility,
                                       "--store", store_file, "--report", str(report)])
    return result.exit_code, result.output, list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"))))


def test_csv_enrollment_reports_rejected_rows_with_reasons(store_file: str, tmp_path: Path, facility: str) -> None:
    code, output, report = _run(store_file, tmp_path, facility)
    assert code == 1
    assert "Enrolling" in output
    assert "3 created, 0 updated, 0 unchanged, 4 rejected" in output
    assert "line 5: gender" in output
    assert "line 6: mobile" in output
    assert "line 7: birth_date" in output
    assert "line 8: health_id" in output
    by_line = {int(r["line"]): r for r in report}
    assert [by_line[n]["outcome"] for n in range(2, 9)] == ["created"] * 3 + ["rejected"] * 4
    assert by_line[4]["health_id"] == "91-5006-4247-3341"
    assert by_line[3]["resource"].startswith("Practitioner/")
    store = open_identity_store(Settings(store_url=store_file))
    try:
        assert {m.purpose for m in store.outbox_messages()} == {"set-password"}
        assert len(store.outbox_messages()) == 3
    finally:
        store.close()
    with TestClient(create_app(Settings(store_url=store_file))) as client:
        authorize(client, facility)  # the enrolling facility holds the records enrollment wrote
        found = client.get("/Patient", params={"identifier": f"{HEALTH_ID_SYSTEM}|{by_line[2]['health_id']}"}).json()
        assert found["total"] == 1
        assert found["entry"][0]["resource"]["managingOrganization"] == {"reference": f"Organization/{facility}"}


def test_re_running_the_same_file_enrolls_no_one_twice(store_file: str, tmp_path: Path, facility: str) -> None:
    _, _, first = _run(store_file, tmp_path, facility)
    code, output, second = _run(store_file, tmp_path, facility)
    assert "0 created, 0 updated, 3 unchanged, 4 rejected" in output
    assert [r["health_id"] for r in first] == [r["health_id"] for r in second]
    store = open_identity_store(Settings(store_url=store_file))
    try:
        assert len(store.outbox_messages()) == 3  # no new codes
    finally:
        store.close()


def test_missing_columns_are_named(store_file: str, tmp_path: Path, facility: str) -> None:
    (tmp_path / "rows.csv").write_text("name,gender\nA,male\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["enroll", "--csv", str(tmp_path / "rows.csv"), "--facility", facility,
                                       "--store", store_file])
    assert result.exit_code != 0 and "birth_date, mobile" in result.output


def test_unknown_facility_rejects_every_row(store_file: str, tmp_path: Path) -> None:
    code, output, _ = _run(store_file, tmp_path, "no-such-org", CSV.split("\n", 2)[0] + "\n" + CSV.split("\n")[1])
    assert code == 1 and "is not known" in output


def test_create_admin_asks_for_a_password_and_signs_in(store_file: str) -> None:
    result = CliRunner().invoke(main, ["create-admin", "--mobile", "9876500000", "--address", "ops.admin@abdm",
                                       "--store", store_file], input="monsoon-tea-at-4\nmonsoon-tea-at-4\n")
    assert result.exit_code == 0, result.output
    assert "monsoon-tea-at-4" not in result.output
    health_id = result.output.split("Health ID: ")[1].split(",")[0].strip()
    with TestClient(create_app(Settings(store_url=store_file, failure_floor_ms=0))) as client:
        login = client.post("/auth/login", json={"id": "ops.admin@abdm", "password": "monsoon-tea-at-4"})
        assert login.status_code == 200
        assert client.post("/auth/login", json={"id": health_id, "password": "monsoon-tea-at-4"}).status_code == 200


def test_create_admin_refuses_a_weak_password(store_file: str) -> None:
    result = CliRunner().invoke(main, ["create-admin", "--mobile", "9876500000", "--store", store_file],
                                input="short\nshort\n")
    assert result.exit_code != 0 and "at least 10" in result.output


def test_there_is_no_built_in_administrator(store_file: str) -> None:
    with TestClient(create_app(Settings(store_url=store_file, failure_floor_ms=0))) as client:
        for id in ("admin", "admin@abdm", "00-0000-0000-0000"):
            for password in ("admin", "password", "admin123456"):
                assert client.post("/auth/login", json={"id": id, "password": password}).status_code == 401


def test_rotate_keys_adds_a_key_and_keeps_the_old_ones(store_file: str) -> None:
    with TestClient(create_app(Settings(store_url=store_file))) as client:
        before = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    result = CliRunner().invoke(main, ["rotate-keys", "--store", store_file])
    assert result.exit_code == 0 and "2 keys published" in result.output
    with TestClient(create_app(Settings(store_url=store_file))) as client:
        after = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    assert before < after and len(after) == 2


def test_dev_token_reaches_the_fhir_api_as_the_facility(store_file: str) -> None:
    result = CliRunner().invoke(main, ["dev-token", "--facility", "phc-1", "--store", store_file])
    assert result.exit_code == 0, result.output
    token = result.output.splitlines()[0]
    with TestClient(create_app(Settings(store_url=store_file))) as client:
        headers = {"Authorization": f"Bearer {token}"}
        created = client.post("/Patient", json={"resourceType": "Patient"}, headers=headers)
        assert created.status_code == 201
        assert {"system": "urn:fhir-server:record-holder", "code": "Organization/phc-1",
                "display": "record holder"} in created.json()["meta"]["security"]
        assert client.get(f"/Patient/{created.json()['id']}", headers=headers).status_code == 200


def test_development_commands_are_refused_in_production(store_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_ENV", "production")
    monkeypatch.setenv("FHIR_SMS_WEBHOOK_URL", "https://sms.example.in/send")
    for args in (["dev-token", "--facility", "phc-1"], ["outbox"]):
        result = CliRunner().invoke(main, [*args, "--store", store_file])
        assert result.exit_code != 0 and "production" in result.output


def test_outbox_shows_the_codes_sent(store_file: str, tmp_path: Path, facility: str) -> None:
    assert "The outbox is empty." in CliRunner().invoke(main, ["outbox", "--store", store_file]).output
    _run(store_file, tmp_path, facility)
    result = CliRunner().invoke(main, ["outbox", "--store", store_file, "--last", "2"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 2 and all("(set-password)" in line for line in lines)
