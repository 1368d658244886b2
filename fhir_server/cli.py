"""The ``fhir-server`` command."""

from __future__ import annotations

import os
import sys
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
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes (validation is CPU-bound: one per CPU for bulk ingest).")
def serve(host: str, port: int, store: str | None, base_url: str | None, workers: int) -> None:
    """Serve the FHIR REST API."""
    import uvicorn

    from fhir_server.app import create_app
    from fhir_server.storage.factory import open_storage

    settings = Settings.from_env()
    if store:
        settings = replace(settings, store_url=store)
    if base_url:
        settings = replace(settings, base_url=base_url)
    try:
        if workers > 1:
            open_storage(settings).close()  # fail here, clearly, rather than in every worker
        else:
            app = create_app(settings)
    except (ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    if workers == 1:
        uvicorn.run(app, host=host, port=port, access_log=False, proxy_headers=False)
        return
    # worker processes build their own app from the environment: hand the options on through it
    os.environ["FHIR_STORE"] = settings.store_url
    if settings.base_url:
        os.environ["FHIR_BASE_URL"] = settings.base_url
    uvicorn.run("fhir_server.app:app_from_env", factory=True, workers=workers, host=host, port=port,
                access_log=False, proxy_headers=False)


def _identity(store: str | None):  # noqa: ANN202 - (Identity, close)
    """The server's services without HTTP: commands go through the same service layer as the API."""
    from consent.identity import build_identity
    from fhir_server.app import build_context

    settings = Settings.from_env()
    if store:
        settings = replace(settings, store_url=store)
    try:
        context = build_context(settings)
        identity = build_identity(settings, context.resources, context.search)
    except (ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None

    def close() -> None:
        identity.close()
        context.storage.close()

    return identity, close


@main.command()
@click.option("--csv", "csv_file", required=True, type=click.File("r", encoding="utf-8"),
              help="Rows to enroll: name, gender, birth_date, mobile, role, address, health_id, external_id.")
@click.option("--facility", required=True, help="Id of the facility's FHIR Organization.")
@click.option("--report", type=click.File("w", encoding="utf-8"), default=None,
              help="Write every row's outcome (line, outcome, health_id, resource, reason) to this CSV file.")
@click.option("--store", default=None, help="Store URL [default: as for serve].")
def enroll(csv_file: click.utils.LazyFile, facility: str, report: click.utils.LazyFile | None,
           store: str | None) -> None:
    """Enroll patients and health workers from a CSV file. Safe to re-run: people already enrolled
    are found again. Each new person gets a set-password code on their mobile. Exits with status 1
    when a row was rejected."""
    from consent.bulk import enroll_rows, read_rows, write_report
    from consent.tokens import Principal

    try:
        rows = read_rows(csv_file.read())
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    identity, close = _identity(store)
    operator = Principal(subject="fhir-server enroll", role="admin", scopes=frozenset())
    try:
        with click.progressbar(enroll_rows(identity.enrollment, operator, rows, facility), length=len(rows),
                               label="Enrolling", file=sys.stderr) as outcomes:
            results = list(outcomes)
    finally:
        close()
    counts = {name: sum(1 for r in results if r.outcome == name) for name in ("created", "updated", "unchanged",
                                                                              "rejected")}
    click.echo(", ".join(f"{n} {name}" for name, n in counts.items()))
    for rejected in (r for r in results if r.outcome == "rejected"):
        click.echo(f"line {rejected.line}: {rejected.reason}")
    if report is not None:
        write_report(results, report)
    if counts["rejected"]:
        raise SystemExit(1)


@main.command("create-admin")
@click.option("--mobile", required=True, help="The administrator's mobile number (sign-in codes go there).")
@click.option("--address", default=None, help="Optional ABHA-style address for signing in, e.g. ops.admin@abdm.")
@click.option("--store", default=None, help="Store URL [default: as for serve].")
def create_admin(mobile: str, address: str | None, store: str | None) -> None:
    """Create an administrator account. There is no built-in administrator: run this once per person.
    Asks for the password (never shown, never a default)."""
    from consent.enrollment import EnrollmentError
    from consent.health_id import AbhaAddress, HealthId, HealthIdError
    from consent.passwords import PasswordPolicyError
    from mappings.enrollment import RowError

    try:
        address = str(AbhaAddress.parse(address, legacy=False)) if address else None
    except HealthIdError as error:
        raise click.BadParameter(str(error), param_hint="--address") from None
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    identity, close = _identity(store)
    try:
        account = identity.enrollment.create_admin(mobile, password, address)
    except (PasswordPolicyError, EnrollmentError, RowError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        close()
    click.echo(f"Administrator created. Health ID: {HealthId(account.health_id).formatted}"
               + (f", address: {address}" if address else ""))


@main.command("rotate-keys")
@click.option("--store", default=None, help="Store URL [default: as for serve].")
def rotate_keys(store: str | None) -> None:
    """Start signing tokens and health cards with a new key. Old keys stay published in the JWKS, so
    tokens and cards they signed keep verifying; running servers pick the new key up within a minute."""
    identity, close = _identity(store)
    try:
        key = identity.keys.rotate()
        published = len(identity.keys.jwks()["keys"])
    finally:
        close()
    click.echo(f"New signing key {key.kid} ({key.alg}); {published} keys published.")


def _development(store: str | None, command: str):  # noqa: ANN202 - (Identity, close)
    identity, close = _identity(store)
    if identity.settings.production:
        close()
        raise click.ClickException(f"{command} is for development; FHIR_ENV=production refuses it")
    return identity, close


@main.command()
@click.option("--mobile", default=None, help="Only messages to this mobile number (+91...).")
@click.option("--last", default=5, show_default=True, help="How many of the newest messages to show.")
@click.option("--store", default=None, help="Store URL [default: as for serve].")
def outbox(mobile: str | None, last: int, store: str | None) -> None:
    """Show the development outbox: the sign-in and set-password codes the server would have sent by
    SMS when no SMS gateway is configured (FHIR_SMS_WEBHOOK_URL). Refused in production mode."""
    identity, close = _development(store, "outbox")
    try:
        messages = identity.store.outbox_messages(mobile)[-last:] if last > 0 else []
    finally:
        close()
    for message in messages:
        click.echo(f"{message.created_at:%Y-%m-%d %H:%M:%S} to {message.recipient} ({message.purpose}): {message.body}")
    if not messages:
        click.echo("The outbox is empty.")


@main.command("dev-token")
@click.option("--facility", required=True, help="Id of the Organization the system acts for (its record holder).")
@click.option("--scope", "scopes", multiple=True, default=("system/*.read", "system/*.write"), show_default=True,
              help="SMART scopes; repeat for several.")
@click.option("--store", default=None, help="Store URL [default: as for serve].")
def dev_token(facility: str, scopes: tuple[str, ...], store: str | None) -> None:
    """Print an access token of a facility EHR system, signed with the server's key, for trying the
    API from the command line. Development only (refused when FHIR_ENV=production): real systems
    get tokens through SMART Backend Services (POST /auth/token), people through sign-in."""
    identity, close = _development(store, "dev-token")
    try:
        token, seconds = identity.issuer.issue(subject=f"dev-{facility}", role="system", scopes=scopes,
                                               facility_id=facility, client_id=f"dev-{facility}")
    finally:
        close()
    click.echo(token)
    click.echo(f"valid for {seconds} s", err=True)
