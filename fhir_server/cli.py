"""The ``fhir-server`` command."""

from __future__ import annotations

from dataclasses import replace

import click

from fhir_server.settings import Settings


@click.group()
def main() -> None:
    """FHIR R4 interoperability server."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="TCP port.")
@click.option("--store", default=None, help="sqlite:///path/file.db or mongodb://... "
              "[default: $FHIR_STORE, $MONGODB_URI, or sqlite:///./data/fhir.db]")
@click.option("--base-url", default=None, help="Public base URL for links (default: from each request).")
def serve(host: str, port: int, store: str | None, base_url: str | None) -> None:
    """Serve the FHIR REST API."""
    import uvicorn

    from fhir_server.app import create_app

    settings = Settings.from_env()
    if store:
        settings = replace(settings, store_url=store)
    if base_url:
        settings = replace(settings, base_url=base_url)
    try:
        app = create_app(settings)
    except (ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    uvicorn.run(app, host=host, port=port, access_log=False, proxy_headers=False)
