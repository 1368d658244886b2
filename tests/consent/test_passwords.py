"""Password hashing (argon2id) and the minimum password policy."""

from __future__ import annotations

import pytest

from consent.passwords import PasswordPolicyError, Passwords, check_password_policy


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(memory_kib=8 * 1024, time_cost=2)


def test_hash_is_argon2id_salted_and_verifies(passwords: Passwords) -> None:
    first, second = passwords.hash("correct horse battery"), passwords.hash("correct horse battery")
    assert first.startswith("$argon2id$") and first != second
    assert passwords.verify(first, "correct horse battery")
    assert not passwords.verify(first, "correct horse batterY")


def test_missing_hash_never_verifies_but_does_the_same_work(passwords: Passwords) -> None:
    real = passwords.hash("correct horse battery")
    assert not passwords.verify(None, "not a password anyone has")  # not even the dummy's own password
    dummy = passwords._dummy  # noqa: SLF001 - the work an unknown account costs
    assert dummy is not None
    # the same algorithm and the same memory, time and parallelism costs as a real password hash
    assert dummy.rsplit("$", 2)[0] == real.rsplit("$", 2)[0]


def test_garbage_hash_does_not_verify(passwords: Passwords) -> None:
    assert not passwords.verify("not-a-hash", "whatever password")


def test_memory_cost_is_the_configured_one() -> None:
    assert "m=16384" in Passwords(memory_kib=16 * 1024, time_cost=1).hash("correct horse battery")


@pytest.mark.parametrize(("password", "message"), [
    ("short1!", "at least 10"),
    ("1234567890123", "not only digits"),
    ("my id 91-5006-4247-3341!", "health ID"),
    ("x91500642473341x", "health ID"),
    ("Asha.Sharma-secret", "ABHA address"),
    ("x" * 257, "at most 256"),
])
def test_policy_rejects_weak_passwords(password: str, message: str) -> None:
    with pytest.raises(PasswordPolicyError, match=message):
        check_password_policy(password, health_id="91500642473341", address="asha.sharma@abdm")


def test_policy_accepts_a_reasonable_password() -> None:
    check_password_policy("monsoon-tea-at-4", health_id="91500642473341", address="asha.sharma@abdm")
