"""ABHA card QR payloads: every variant read (ABDM.md), one written."""

from __future__ import annotations

import pytest

from mappings.abha_qr import CardPayload, PayloadError, format_dob, parse_dob, read_payload, write_payload


@pytest.mark.parametrize(("text", "expected"), [("1980", "1980"), ("5/9/1980", "1980-09-05"),
                                                ("05/09/1980", "1980-09-05"), ("5-9-1980", "1980-09-05"),
                                                ("1980-09-05", "1980-09-05")])
def test_dob_forms(text: str, expected: str) -> None:
    assert parse_dob(text) == expected


@pytest.mark.parametrize("text", ["", "80", "31/2/1980", "1980/09/05", "5.9.1980"])
def test_bad_dob(text: str) -> None:
    with pytest.raises(PayloadError):
        parse_dob(text)


def test_card_variant() -> None:
    payload = read_payload({"hidn": "91-1234-5678-9015", "hid": "name@abdm", "name": "Asha", "gender": "M",
                            "statelgd": "10", "distlgd": "-", "dob": "5/9/1980", "state name": "Bihar",
                            "district_name": "Samastipur", "mobile": "98xxxxxx6x", "address": "Ward 4"})
    assert payload == CardPayload("91-1234-5678-9015", "name@abdm", "Asha", "male", "1980-09-05", "Bihar",
                                  "Samastipur", "98xxxxxx6x", "Ward 4")


def test_app_variant_and_other_spellings() -> None:
    app = read_payload({"hidn": "x", "phr": "name@sbx", "gender": "F", "dob": "5-9-1980", "dist name": "D",
                        "state_name": "S"})
    assert (app.address, app.gender, app.birth_date, app.district, app.state) == ("name@sbx", "female",
                                                                                 "1980-09-05", "D", "S")


def test_payload_needs_a_health_id() -> None:
    with pytest.raises(PayloadError, match="hidn"):
        read_payload({"hid": "name@abdm"})
    with pytest.raises(PayloadError):
        read_payload(["not", "an", "object"])  # type: ignore[arg-type]


def test_written_payload_is_the_card_variant_and_reads_back() -> None:
    written = write_payload(health_id="91-5006-4247-3341", address="asha@abdm", name="Asha", gender="female",
                            birth_date="1980-09-05")
    assert written == {"hidn": "91-5006-4247-3341", "hid": "asha@abdm", "name": "Asha", "gender": "F",
                       "statelgd": "-", "distlgd": "-", "dob": "5/9/1980"}
    back = read_payload(written)
    assert (back.health_id, back.address, back.gender, back.birth_date) == ("91-5006-4247-3341", "asha@abdm",
                                                                            "female", "1980-09-05")
    assert format_dob("1980") == "1980"
