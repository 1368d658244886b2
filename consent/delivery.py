"""Getting one-time codes to a person's mobile: a pluggable ``MessageSender``.

``OutboxSender`` keeps messages in the identity store for developers and tests to read; it is
refused in production mode. ``WebhookSender`` posts each message as JSON to an SMS gateway. Neither
logs a message's text or its recipient.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from typing import Protocol
from urllib.parse import urlsplit

import orjson

from consent.clock import Clock
from consent.store import IdentityStore, OutboxMessage, outbox_id
from fhir_server.settings import Settings

log = logging.getLogger("consent.delivery")


class DeliveryError(Exception):
    """The message could not be handed to the gateway."""


class MessageSender(Protocol):
    channel: str  # how the person receives it, as told to clients: "sms" (also the outbox, which stands in for it)

    def send(self, recipient: str, purpose: str, text: str) -> None: ...


class OutboxSender:
    channel = "sms"

    def __init__(self, store: IdentityStore, clock: Clock, *, production: bool) -> None:
        if production:
            raise ValueError("the development OTP outbox is refused in production mode: "
                             "set FHIR_SMS_WEBHOOK_URL to an SMS gateway")
        self._store = store
        self._clock = clock

    def send(self, recipient: str, purpose: str, text: str) -> None:
        self._store.add_outbox_message(OutboxMessage(id=outbox_id(), created_at=self._clock(), recipient=recipient,
                                                     purpose=purpose, body=text))


class WebhookSender:
    """POSTs ``{"to", "purpose", "message"}`` to the gateway, with a bearer token if configured."""

    channel = "sms"

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0, production: bool = False) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the SMS webhook URL must be an http(s) URL")
        if production and parts.scheme != "https":
            raise ValueError("in production mode the SMS webhook URL must use https")
        self._url = url
        self._token = token
        self._timeout = timeout

    def send(self, recipient: str, purpose: str, text: str) -> None:
        body = orjson.dumps({"to": recipient, "purpose": purpose, "message": text})
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - checked scheme
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            log.warning("SMS gateway unreachable: %s", type(error).__name__)
            raise DeliveryError("the SMS gateway could not be reached") from None
        if not 200 <= status < 300:
            log.warning("SMS gateway refused a message: HTTP %s", status)
            raise DeliveryError(f"the SMS gateway answered {status}")


def build_sender(settings: Settings, store: IdentityStore, clock: Clock) -> MessageSender:
    if settings.sms_webhook_url:
        return WebhookSender(settings.sms_webhook_url, settings.sms_webhook_token, production=settings.production)
    return OutboxSender(store, clock, production=settings.production)
