"""FHIR R4 interoperability server: REST API, search, bundles, on SQLite (embedded) or MongoDB."""

__version__ = "0.1.0"
