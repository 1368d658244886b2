"""Settings from the environment and the ``fhir-server`` command line."""

from __future__ import annotations

import os

from click.testing import CliRunner

from fhir_server.cli import main
from fhir_server.settings import DEFAULT_STORE, Settings
from fhir_server.storage.factory import open_storage

import pytest


def test_default_store_is_embedded_sqlite() -> None:
    assert Settings.from_env({}).store_url == DEFAULT_STORE == "sqlite:///./data/fhir.db"


def test_fhir_store_wins_over_mongodb_uri() -> None:
    env = {"FHIR_STORE": "sqlite:////tmp/x.db", "MONGODB_URI": "mongodb://db/fhir"}
    assert Settings.from_env(env).store_url == "sqlite:////tmp/x.db"
    assert Settings.from_env({"MONGODB_URI": "mongodb://db/fhir"}).store_url == "mongodb://db/fhir"


def test_environment_overrides_limits_and_base_url() -> None:
    settings = Settings.from_env({"FHIR_MAX_BODY_BYTES": "1024", "FHIR_MAX_COUNT": "50",
                                  "FHIR_BASE_URL": "https://fhir.example.in"})
    assert (settings.max_body_bytes, settings.max_count, settings.base_url) == (1024, 50, "https://fhir.example.in")


def test_sqlite_store_creates_its_folder(tmp_path) -> None:
    storage = open_storage(Settings(store_url=f"sqlite:///{tmp_path}/nested/dir/fhir.db"))
    storage.close()
    assert (tmp_path / "nested" / "dir" / "fhir.db").exists()


def test_unknown_store_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_storage(Settings(store_url="postgres://x/y"))


def test_serve_help_lists_the_documented_options() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--store", "--base-url", "--workers"):
        assert option in result.output


def test_serve_refuses_a_bad_store_url_with_a_clear_message() -> None:
    for extra in ([], ["--workers", "2"]):
        result = CliRunner().invoke(main, ["serve", "--store", "postgres://x/y", *extra])
        assert result.exit_code != 0
        assert "unsupported store URL" in result.output


def test_serve_with_several_workers_hands_the_store_to_them_through_the_environment(
        tmp_path, monkeypatch) -> None:  # noqa: ANN001 - pytest fixtures
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))
    monkeypatch.setenv("FHIR_STORE", "sqlite:///replaced-by-the-command.db")  # restored after the test
    store = f"sqlite:///{tmp_path}/w.db"
    result = CliRunner().invoke(main, ["serve", "--store", store, "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert calls == [("fhir_server.app:app_from_env", {"factory": True, "workers": 2, "host": "127.0.0.1",
                                                       "port": 8080, "access_log": False, "proxy_headers": False})]
    assert os.environ["FHIR_STORE"] == store
