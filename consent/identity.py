"""The identity subsystem of one server instance, wired from Settings: store, keys, token issuer and
verifier, sign-in, credentials, system clients, enrollment, directory.

``Identity.verify_access_token(token) -> Principal`` is the hand-over point to authorization on the
FHIR API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consent.clients import ClientService
from consent.clock import Clock, system_clock
from consent.credentials import CredentialService
from consent.delivery import MessageSender, build_sender
from consent.directory import HealthIdDirectory
from consent.enrollment import EnrollmentService
from consent.keys import KeyRing
from consent.passwords import Passwords
from consent.signin import SignInService
from consent.store import IdentityStore, open_identity_store
from consent.tokens import InvalidTokenError, Principal, TokenIssuer, TokenVerifier
from fhir_server.service.resources import ResourceService
from fhir_server.service.search import SearchService
from fhir_server.settings import Settings


@dataclass
class Identity:
    settings: Settings
    store: IdentityStore
    clock: Clock
    keys: KeyRing
    passwords: Passwords
    sender: MessageSender
    issuer: TokenIssuer
    verifier: TokenVerifier
    signin: SignInService
    credentials: CredentialService
    clients: ClientService
    enrollment: EnrollmentService
    directory: HealthIdDirectory = field(repr=False)

    def verify_access_token(self, token: str) -> Principal:
        """The verified caller behind a bearer token; ``InvalidTokenError`` otherwise."""
        return self.verifier.verify(token)

    def principal_from_header(self, authorization: str | None) -> Principal:
        """``Authorization: Bearer <token>`` → Principal; ``InvalidTokenError`` when absent or bad."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidTokenError("a bearer token is required")
        return self.verify_access_token(token.strip())

    def close(self) -> None:
        self.store.close()


def build_identity(settings: Settings, resources: ResourceService, search: SearchService,
                   clock: Clock = system_clock) -> Identity:
    store = open_identity_store(settings)
    try:
        keys = KeyRing(store, settings.signing_alg, clock)
        passwords = Passwords(memory_kib=settings.password_memory_kib)
        sender = build_sender(settings, store, clock)
        issuer = TokenIssuer(keys, clock, issuer=settings.issuer, audience=settings.audience,
                             lifetime_seconds=settings.access_token_seconds)
        verifier = TokenVerifier(keys, clock, issuer=settings.issuer, audience=settings.audience)
    except BaseException:
        store.close()
        raise
    credentials = CredentialService(store, passwords, sender, clock, failure_floor_ms=settings.failure_floor_ms)
    return Identity(
        settings=settings, store=store, clock=clock, keys=keys, passwords=passwords, sender=sender, issuer=issuer,
        verifier=verifier,
        signin=SignInService(store, passwords, sender, issuer, clock, lockout_seconds=settings.lockout_seconds,
                             refresh_seconds=settings.refresh_token_seconds,
                             failure_floor_ms=settings.failure_floor_ms),
        credentials=credentials,
        clients=ClientService(store, issuer, clock),
        enrollment=EnrollmentService(store, resources, credentials, passwords, clock),
        directory=HealthIdDirectory(store, resources, search, keys),
    )
