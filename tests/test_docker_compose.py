"""Static checks of docker/compose.yaml and docker/Dockerfile.

No Docker engine is available to CI, so these tests pin down the wiring that would otherwise only
fail at `docker compose up`: the replica set name and member host, the server's connection string,
start-up ordering, health checks, the published port and the non-root user.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

yaml = pytest.importorskip("yaml")

DOCKER_DIR = Path(__file__).resolve().parents[1] / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
MONGO = "mongo"
SERVER = "fhir-server"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def dockerfile(compose: dict[str, Any]) -> list[tuple[str, str]]:
    """The final build stage's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = _dockerfile_path(compose).read_text()
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _dockerfile_path(compose: dict[str, Any]) -> Path:
    build = compose["services"][SERVER]["build"]
    return (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve()


def _words(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _replica_set_name(compose: dict[str, Any]) -> str:
    command = _words(compose["services"][MONGO]["command"])
    assert "--replSet" in command, command
    return command[command.index("--replSet") + 1]


def _healthcheck_script(service: dict[str, Any]) -> str:
    return " ".join(_words(service["healthcheck"]["test"]))


def _published_container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def test_compose_defines_mongo_and_server_services(compose: dict[str, Any]) -> None:
    assert {MONGO, SERVER} <= set(compose["services"])
    assert compose["services"][MONGO]["image"].split(":")[0] == "mongo"


@pytest.mark.parametrize("name", [MONGO, SERVER])
def test_every_service_has_a_healthcheck(compose: dict[str, Any], name: str) -> None:
    healthcheck = compose["services"][name]["healthcheck"]
    test = _words(healthcheck["test"])
    assert test[0] in {"CMD", "CMD-SHELL"}, test
    assert len(test) > 1
    assert not healthcheck.get("disable", False)


def test_mongo_starts_a_replica_set_reachable_from_other_containers(
    compose: dict[str, Any],
) -> None:
    command = _words(compose["services"][MONGO]["command"])
    assert _replica_set_name(compose) == "rs0"
    assert "--bind_ip_all" in command


def test_mongo_healthcheck_initiates_the_replica_set_with_the_service_host(
    compose: dict[str, Any],
) -> None:
    script = _healthcheck_script(compose["services"][MONGO])
    assert "mongosh" in script
    initiate = re.search(r"rs\.initiate\(\{\s*_id\s*:\s*'([^']+)'(.*?)\}\s*\)", script)
    assert initiate, script
    assert initiate.group(1) == _replica_set_name(compose)
    hosts = re.findall(r"host\s*:\s*'([^']+)'", initiate.group(2))
    assert hosts == [f"{MONGO}:27017"]


def test_mongo_healthcheck_is_healthy_only_when_primary(compose: dict[str, Any]) -> None:
    script = _healthcheck_script(compose["services"][MONGO])
    assert "isWritablePrimary" in script
    assert re.search(r"quit\(\s*1\s*\)", script)


def test_mongo_data_lives_on_a_declared_named_volume(compose: dict[str, Any]) -> None:
    mounts = compose["services"][MONGO]["volumes"]
    sources = {}
    for mount in mounts:
        if isinstance(mount, dict):
            sources[mount["target"]] = mount["source"]
        else:
            source, target = str(mount).split(":")[:2]
            sources[target] = source
    assert "/data/db" in sources
    volume = sources["/data/db"]
    assert not volume.startswith((".", "/", "~")), "a bind mount, not a named volume"
    assert volume in (compose.get("volumes") or {})


def test_server_connection_string_targets_the_mongo_replica_set(compose: dict[str, Any]) -> None:
    env = _environment(compose["services"][SERVER])
    uri = urlsplit(env["MONGODB_URI"])
    assert uri.scheme == "mongodb"
    assert uri.hostname == MONGO
    assert (uri.port or 27017) == 27017
    assert parse_qs(uri.query)["replicaSet"] == [_replica_set_name(compose)]
    assert env["FHIR_STORE"] == env["MONGODB_URI"]


def test_server_waits_for_a_healthy_mongo(compose: dict[str, Any]) -> None:
    depends_on = compose["services"][SERVER]["depends_on"]
    assert depends_on[MONGO]["condition"] == "service_healthy"


def test_server_restarts_and_publishes_8080(compose: dict[str, Any]) -> None:
    server = compose["services"][SERVER]
    assert server["restart"] in {"always", "unless-stopped", "on-failure"}
    assert _published_container_ports(server) == {8080}


def test_server_is_built_from_the_repository_dockerfile(compose: dict[str, Any]) -> None:
    context = COMPOSE_FILE.parent / compose["services"][SERVER]["build"]["context"]
    assert context.resolve() == DOCKER_DIR.parent
    assert _dockerfile_path(compose) == DOCKER_DIR / "Dockerfile"
    assert _dockerfile_path(compose).is_file()


def test_dockerfile_healthcheck_requests_metadata(dockerfile: list[tuple[str, str]]) -> None:
    healthchecks = [arguments for keyword, arguments in dockerfile if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/metadata" in healthchecks[0]
    assert "curl" not in healthchecks[0], "python:3.11-slim ships without curl"


def test_dockerfile_exposes_the_published_port(
    compose: dict[str, Any], dockerfile: list[tuple[str, str]]
) -> None:
    exposed = {
        int(port.split("/")[0])
        for keyword, arguments in dockerfile
        if keyword == "EXPOSE"
        for port in arguments.split()
    }
    assert exposed == _published_container_ports(compose["services"][SERVER]) == {8080}
    cmd = [arguments for keyword, arguments in dockerfile if keyword == "CMD"][-1]
    assert re.search(r'"--port",\s*"8080"', cmd), cmd
    assert re.search(r'"--host",\s*"0\.0\.0\.0"', cmd), cmd


def test_dockerfile_does_not_run_as_root(dockerfile: list[tuple[str, str]]) -> None:
    users = [arguments for keyword, arguments in dockerfile if keyword == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
