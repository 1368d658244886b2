"""Delivering one-time codes: the development outbox and the SMS webhook (against a loopback server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from consent.codes import code_matches, hash_code, new_code
from consent.delivery import DeliveryError, OutboxSender, WebhookSender, build_sender
from consent.store.sqlite import SqliteIdentityStore
from fhir_server.settings import Settings
from tests.consent.fakes import FakeClock


class _Gateway:
    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], dict]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                gateway.requests.append((dict(self.headers), json.loads(body)))
                self.send_response(gateway.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/sms"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[_Gateway]:
    server = _Gateway()
    yield server
    server.stop()


def test_outbox_keeps_messages_for_tests_to_read(tmp_path: Path) -> None:
    store = SqliteIdentityStore(str(tmp_path / "id.db"))
    sender = OutboxSender(store, FakeClock(), production=False)
    sender.send("+919800000001", "login-otp", "Your code is 123456")
    (message,) = store.outbox_messages("+919800000001")
    assert (message.purpose, message.body) == ("login-otp", "Your code is 123456")


def test_outbox_is_refused_in_production_mode(tmp_path: Path) -> None:
    store = SqliteIdentityStore(str(tmp_path / "id.db"))
    with pytest.raises(ValueError, match="refused in production"):
        OutboxSender(store, FakeClock(), production=True)
    with pytest.raises(ValueError, match="refused in production"):
        build_sender(Settings(production=True), store, FakeClock())


def test_settings_choose_the_sender(tmp_path: Path) -> None:
    store = SqliteIdentityStore(str(tmp_path / "id.db"))
    assert isinstance(build_sender(Settings(), store, FakeClock()), OutboxSender)
    assert isinstance(build_sender(Settings(production=True, sms_webhook_url="https://sms.example.in/send"),
                                   store, FakeClock()), WebhookSender)


def test_webhook_posts_json_with_the_bearer_token(gateway: _Gateway) -> None:
    WebhookSender(gateway.url, "gw-secret").send("+919800000001", "login-otp", "Your code is 123456")
    ((headers, body),) = gateway.requests
    assert headers["Authorization"] == "Bearer gw-secret"
    assert headers["Content-Type"] == "application/json"
    assert body == {"to": "+919800000001", "purpose": "login-otp", "message": "Your code is 123456"}


def test_webhook_failure_status_raises(gateway: _Gateway, caplog: pytest.LogCaptureFixture) -> None:
    gateway.status = 503
    with pytest.raises(DeliveryError, match="503"):
        WebhookSender(gateway.url).send("+919800000001", "login-otp", "Your code is 654321")
    assert "654321" not in caplog.text and "+919800000001" not in caplog.text


def test_unreachable_webhook_raises(gateway: _Gateway) -> None:
    url = gateway.url
    gateway.stop()
    with pytest.raises(DeliveryError, match="could not be reached"):
        WebhookSender(url, timeout=2).send("+919800000001", "login-otp", "x")


def test_webhook_needs_https_in_production() -> None:
    with pytest.raises(ValueError, match="https"):
        WebhookSender("http://sms.example.in/send", production=True)
    with pytest.raises(ValueError, match="http"):
        WebhookSender("ftp://sms.example.in/send")


def test_codes_are_six_digits_and_stored_only_hashed() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 150
    stored = hash_code("challenge-1", "123456")
    assert "123456" not in stored
    assert code_matches("challenge-1", "123456", stored)
    assert not code_matches("challenge-2", "123456", stored)
    assert not code_matches("challenge-1", "123457", stored)
    assert not code_matches("challenge-1", "123456", None)
