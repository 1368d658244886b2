"""Health IDs: issuing, Luhn check digit, parsing and display; ABHA address rules (ABDM.md)."""

from __future__ import annotations

import pytest

from consent.health_id import AbhaAddress, HealthId, HealthIdError, luhn_check_digit, luhn_valid

KNOWN_REAL = ["91-5006-4247-3341", "22-7225-4829-5255"]  # sandbox and NRCeS examples


@pytest.mark.parametrize("number", KNOWN_REAL)
def test_known_real_numbers_pass_luhn(number: str) -> None:
    assert luhn_valid(number.replace("-", ""))


def test_luhn_check_digit_matches_reference_example() -> None:
    assert luhn_check_digit("7992739871") == "3"  # the classic worked example


def test_ten_thousand_issued_ids_are_unique_valid_and_not_sequential() -> None:
    ids = [HealthId.generate() for _ in range(10_000)]
    digits = [i.digits for i in ids]
    assert len(set(digits)) == len(digits)
    assert all(len(d) == 14 and d[0] != "0" and luhn_valid(d) for d in digits)
    numbers = sorted(int(d) for d in digits)
    gaps = [b - a for a, b in zip(numbers, numbers[1:])]
    # consecutive issue would put neighbours 10 apart (next body, new check digit); random IDs over
    # 9e12 bodies leave the smallest of 10,000 gaps near 9e4
    assert min(gaps) > 100


def test_issued_ids_spread_over_leading_digits() -> None:
    leading = {HealthId.generate().digits[:2] for _ in range(2_000)}
    assert len(leading) > 80  # of the 90 possible two-digit prefixes


@pytest.mark.parametrize("text", ["91-5006-4247-3341", "91500642473341", "91 5006 4247 3341", " 9150-0642 473341 "])
def test_parse_accepts_hyphens_and_spaces(text: str) -> None:
    assert HealthId.parse(text).digits == "91500642473341"


def test_format_is_two_four_four_four() -> None:
    assert HealthId.parse("91500642473341").formatted == "91-5006-4247-3341"
    assert str(HealthId.parse("91500642473341")) == "91-5006-4247-3341"


def test_generated_id_round_trips_through_its_display_form() -> None:
    issued = HealthId.generate()
    assert HealthId.parse(issued.formatted) == issued


@pytest.mark.parametrize(("text", "message"), [
    ("", "required"),
    ("91-5006-4247-334", "14 digits, this one has 13"),
    ("91-5006-4247-33411", "14 digits, this one has 15"),
    ("91-5006-4247-334a", "only digits"),
    ("91-5006-4247-3342", "check digit"),
])
def test_parse_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(HealthIdError, match=message):
        HealthId.parse(text)


def test_imported_id_with_failed_luhn_is_accepted_with_a_warning() -> None:
    parsed = HealthId.parse("91-5006-4247-3342", check_digit="warn")
    assert parsed.digits == "91500642473342"
    assert parsed.warnings and "check digit" in parsed.warnings[0]
    assert HealthId.parse("91-5006-4247-3341", check_digit="warn").warnings == ()


def test_imported_mode_still_rejects_wrong_length() -> None:
    with pytest.raises(HealthIdError, match="14 digits"):
        HealthId.parse("1234", check_digit="warn")


@pytest.mark.parametrize("text", ["asha.sharma@abdm", "Asha.Sharma@ABDM", "asha@sbx", "asha1980@ndhm",
                                  "a.b.c.d@abdm", "91500642473341@abdm"])
def test_valid_addresses(text: str) -> None:
    address = AbhaAddress.parse(text)
    assert str(address) == text.lower()


@pytest.mark.parametrize(("text", "message"), [
    ("asha", "looks like name@abdm"),
    ("@abdm", "looks like name@abdm"),
    ("asha@gmail.com", "ends in"),
    ("ash@abdm", "at least 4"),
    ("1asha@abdm", "does not start with a digit"),
    (".asha@abdm", "start or end with a dot"),
    ("asha.@abdm", "start or end with a dot"),
    ("asha_s@abdm", "only letters, digits and dots"),
    ("asha s@abdm", "only letters, digits and dots"),
    ("12345@abdm", "14-digit health ID"),
    ("91500642473341@sbx", "14-digit health ID"),
    ("a" * 33 + "@abdm", "at most 32"),
])
def test_invalid_addresses(text: str, message: str) -> None:
    with pytest.raises(HealthIdError, match=message):
        AbhaAddress.parse(text)


def test_new_addresses_may_refuse_the_legacy_domain() -> None:
    with pytest.raises(HealthIdError, match="ends in"):
        AbhaAddress.parse("asha1980@ndhm", legacy=False)


def test_looks_like_routes_numbers_and_addresses() -> None:
    assert HealthId.looks_like("91-5006-4247-3341")
    assert not HealthId.looks_like("asha@abdm")
    assert not HealthId.looks_like("")
