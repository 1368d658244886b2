"""One settings object, read from the environment or the command line; no global state."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

DEFAULT_STORE = "sqlite:///./data/fhir.db"


@dataclass(frozen=True, slots=True)
class Settings:
    store_url: str = DEFAULT_STORE
    base_url: str | None = None  # public base URL; None: built from each request (X-Forwarded-* honoured)
    max_body_bytes: int = 16 * 1024 * 1024
    default_count: int = 20
    max_count: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """``FHIR_STORE`` wins; otherwise ``MONGODB_URI`` selects MongoDB; otherwise the SQLite default."""
        settings = cls()
        store = env.get("FHIR_STORE") or env.get("MONGODB_URI")
        if store:
            settings = replace(settings, store_url=store)
        if env.get("FHIR_BASE_URL"):
            settings = replace(settings, base_url=env["FHIR_BASE_URL"])
        if env.get("FHIR_MAX_BODY_BYTES"):
            settings = replace(settings, max_body_bytes=int(env["FHIR_MAX_BODY_BYTES"]))
        if env.get("FHIR_MAX_COUNT"):
            settings = replace(settings, max_count=int(env["FHIR_MAX_COUNT"]))
        return settings
