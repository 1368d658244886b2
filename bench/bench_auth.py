"""Bearer tokens for the benchmarks: every FHIR endpoint wants ``Authorization: Bearer <token>``.

``mint_token(settings)`` signs a system token for the facility ``BENCH_FACILITY`` with the server's
own key, read from (or, on a fresh store, made and saved in) the identity store beside the FHIR data
at ``settings.store_url``; the server verifies it with that stored key, so no sign-in is needed.
Minting before the server starts saves the key first, so several workers on a fresh store all load
that one key instead of racing to make their own. A token lives at most 30 minutes: benches mint one
per measured phase. wrk scripts read it from the ``BENCH_TOKEN`` environment variable.
"""

from __future__ import annotations

from consent.clock import system_clock
from consent.keys import KeyRing
from consent.store import open_identity_store
from consent.tokens import MAX_ACCESS_TOKEN_LIFETIME, TokenIssuer
from fhir_server.settings import Settings

BENCH_FACILITY = "bench-facility"
BENCH_CLIENT = "bench"
SCOPES = ("system/*.read", "system/*.write")
TOKEN_ENV = "BENCH_TOKEN"
LIFETIME_S = int(MAX_ACCESS_TOKEN_LIFETIME.total_seconds())  # longer than any phase (at most 600 s + warm-up)


def mint_token(settings: Settings) -> str:
    """A fresh access token of a facility system client of ``BENCH_FACILITY`` (read and write on every
    resource type), for the server on ``settings.store_url`` with the same issuer and audience."""
    store = open_identity_store(settings)
    try:
        keys = KeyRing(store, settings.signing_alg, system_clock)
        issuer = TokenIssuer(keys, system_clock, issuer=settings.issuer, audience=settings.audience,
                             lifetime_seconds=LIFETIME_S)
        token, _ = issuer.issue(subject=BENCH_CLIENT, role="system", scopes=SCOPES, facility_id=BENCH_FACILITY,
                                client_id=BENCH_CLIENT)
    finally:
        store.close()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
