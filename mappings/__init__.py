"""Pure functions from outside formats to FHIR resources and bundles."""
