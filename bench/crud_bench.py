"""CRUD throughput of the FHIR server as a ratio to a FastAPI baseline measured in the same run.

Usage:
    python bench/crud_bench.py [--duration 20] [--connections 32] [--threads 2] [--check]

What it does, all on the loopback interface and bounded in time:
  1. Makes sure `wrk` is installed (apt-get install wrk when it is missing and we are root).
  2. Starts the real server (uvicorn, one worker, uvloop, httptools, no access log, on a fresh
     SQLite store in a temporary directory), creates the 1,000 Patients that the read and update
     phases use, and reads one back: those bytes are what the baseline serves.
  3. Starts the baseline (bench/baseline_app.py: one async route returning those bytes, same
     uvicorn settings), measures it with wrk, and stops it.
  4. Measures the phases `create` (POST /Patient), `read` (GET /Patient/{id}) and `update`
     (PUT /Patient/{id}) on the real server with the wrk scripts in bench/lua/.
     Every measurement is --duration seconds after a 2-second warm-up that is not counted.
  5. Prints req/s, p50 and p99 latency and the count of non-2xx responses and socket errors per
     phase, the baseline's req/s and each phase's ratio to it (ratio_read = read req/s / baseline
     req/s), and writes the same figures to bench/results/crud.json.
Every request, the baseline's too (same request size), carries a bearer token of a facility system
client (bench/bench_auth.py), minted afresh for each phase.

Exit status: 0 when every phase had only 2xx responses; 1 when a phase had a non-2xx response or a
socket error, or when the setup failed; with --check, also 1 when ratio_read is below 0.6 or the
read phase is below 1500 req/s (the project's targets). --only-baseline measures just the baseline,
with a synthetic body of the same shape, for working on this harness without the server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from bench_auth import TOKEN_ENV, bearer, mint_token

from fhir_server.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LUA_DIR = BENCH_DIR / "lua"
RESULTS_FILE = BENCH_DIR / "results" / "crud.json"

HOST = "127.0.0.1"
FHIR_JSON = "application/fhir+json"
UVICORN_FLAGS = (
    "--loop", "uvloop",
    "--http", "httptools",
    "--no-access-log",
    "--no-proxy-headers",
    "--log-level", "warning",
)  # fmt: skip
SEED_COUNT = 1000
PHASES = ("create", "read", "update")
TARGET_RATIO_READ = 0.6
TARGET_READ_RPS = 1500.0
ID_PLACEHOLDER = "__ID__"
SERVER_START_TIMEOUT_S = 60.0
WRK_TIMEOUT = "5s"
WARMUP_S = 2


class BenchError(Exception):
    """A failure that ends the run with a one-line explanation instead of a traceback."""


@dataclass(frozen=True)
class PhaseResult:
    phase: str
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def failed(self) -> bool:
        return self.non_2xx > 0 or self.socket_errors > 0

    @classmethod
    def from_wrk(cls, phase: str, raw: dict[str, float]) -> PhaseResult:
        duration_s = raw["duration_us"] / 1e6
        return cls(
            phase=phase,
            requests=int(raw["requests"]),
            duration_s=round(duration_s, 3),
            requests_per_s=round(raw["requests"] / duration_s, 1),
            p50_ms=raw["p50_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            non_2xx=int(raw["non_2xx"]),
            socket_errors=int(
                raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
            ),
        )


def benchmark_patient() -> dict[str, object]:
    """A Patient of realistic size (about 1.5 KB) and shape for the network this server serves."""
    return {
        "resourceType": "Patient",
        "identifier": [
            {
                "use": "official",
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "code": "MR",
                            "display": "Medical record number",
                        }
                    ]
                },
                "system": "https://example.org/fhir/sid/district-hospital-mrn",
                "value": "DH-2024-0048213",
            },
            {
                "type": {"text": "ABHA number"},
                "system": "https://healthid.abdm.gov.in",
                "value": "91-4726-3810-5529",
            },
        ],
        "active": True,
        "name": [
            {
                "use": "official",
                "text": "Lakshmi Narayanan Iyer",
                "family": "Iyer",
                "given": ["Lakshmi", "Narayanan"],
                "prefix": ["Smt."],
            }
        ],
        "telecom": [
            {"system": "phone", "value": "+91-98450-12345", "use": "mobile", "rank": 1},
            {"system": "email", "value": "lakshmi.iyer@example.org", "use": "home"},
        ],
        "gender": "female",
        "birthDate": "1968-09-14",
        "address": [
            {
                "use": "home",
                "type": "physical",
                "line": ["No. 14, 3rd Cross, Gandhi Nagar", "Near Sri Rama Temple"],
                "city": "Bengaluru",
                "district": "Bengaluru Urban",
                "state": "Karnataka",
                "postalCode": "560009",
                "country": "IN",
            }
        ],
        "maritalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                    "code": "M",
                    "display": "Married",
                }
            ]
        },
        "contact": [
            {
                "relationship": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                "code": "N",
                                "display": "Next-of-Kin",
                            }
                        ]
                    }
                ],
                "name": {"family": "Iyer", "given": ["Ramesh"]},
                "telecom": [{"system": "phone", "value": "+91-98450-67890", "use": "mobile"}],
                "gender": "male",
            }
        ],
        "communication": [
            {
                "language": {
                    "coding": [{"system": "urn:ietf:bcp:47", "code": "kn", "display": "Kannada"}]
                },
                "preferred": True,
            },
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}},
        ],
    }


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def synthetic_read_body(patient: dict[str, object]) -> bytes:
    """What a read of `patient` looks like when no server is at hand: an id and meta added."""
    stored = {
        "resourceType": "Patient",
        "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "meta": {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00.000+00:00"},
        **{key: value for key, value in patient.items() if key != "resourceType"},
    }
    return _json_bytes(stored)


def ensure_wrk() -> str:
    """Path of wrk, installed with apt-get when missing; BenchError when that is impossible."""
    found = shutil.which("wrk")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        raise BenchError("wrk is not installed; install it (Debian/Ubuntu: apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "--no-install-recommends", "wrk"]
    _log("wrk is missing: apt-get install wrk")
    if _run_quietly(install, env).returncode != 0:
        _log("apt-get install failed: apt-get update, then retry")
        update = _run_quietly([apt_get, "update"], env)
        if update.returncode != 0 or _run_quietly(install, env).returncode != 0:
            raise BenchError("could not install wrk with apt-get; install it and run again")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get reported success but wrk is not on PATH")
    return found


def _run_quietly(command: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(command)} did not finish in {exc.timeout:.0f} s") from exc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class UvicornServer:
    """A uvicorn subprocess on a free loopback port, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(
        self, name: str, factory: str, app_dir: Path, env: dict[str, str], work_dir: Path, workers: int = 1
    ) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self._command = [
            sys.executable, "-m", "uvicorn", "--factory", factory, "--app-dir", str(app_dir),
            "--host", HOST, "--port", str(self.port), "--workers", str(workers), *UVICORN_FLAGS,
        ]  # fmt: skip
        self._env = env
        self._work_dir = work_dir
        self._log_path = work_dir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> UvicornServer:
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._command,
                env=self._env,
                cwd=self._work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)

    def wait_until_ready(self, path: str) -> None:
        """Poll `path` until it answers 200; BenchError (with the server's log) if it never does."""
        assert self._process is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchError(
                    f"{self.name} server exited with status {self._process.returncode}:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise BenchError(
            f"{self.name} server did not answer GET {path} within {SERVER_START_TIMEOUT_S:.0f} s:\n"
            + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        text = self._log_path.read_text(errors="replace") if self._log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class FhirClient:
    """Just enough of a FHIR client to prepare the benchmark over one keep-alive connection."""

    def __init__(self, port: int, token: str) -> None:
        self._connection = http.client.HTTPConnection(HOST, port, timeout=10)
        self._token = token

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._connection.close()

    def request(self, method: str, path: str, body: bytes | None, expect: int) -> bytes:
        headers = {"Accept": FHIR_JSON, **bearer(self._token)}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        self._connection.request(method, path, body=body, headers=headers)
        response = self._connection.getresponse()
        payload = response.read()
        if response.status != expect:
            raise BenchError(
                f"{method} {path} answered {response.status}, expected {expect}: {payload[:500]!r}"
            )
        return payload


def seed_patients(client: FhirClient, body: bytes, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        created = json.loads(client.request("POST", "/Patient", body, expect=201))
        ids.append(created["id"])
    return ids


@dataclass(frozen=True)
class Wrk:
    """wrk with this run's load settings; every script prints one BENCH_RESULT line in done()."""

    path: str
    threads: int
    connections: int

    def measure(
        self,
        phase: str,
        script: Path,
        base_url: str,
        duration_s: int,
        script_env: dict[str, str] | None = None,
    ) -> PhaseResult:
        """A warm-up that is not counted but must be error-free, then the measured run."""
        _log(f"{phase}: wrk for {WARMUP_S} s warm-up, then {duration_s} s measured ...")
        warmup = self._run(phase, script, base_url, WARMUP_S, script_env or {})
        if warmup.failed:
            raise BenchError(
                f"{phase} warm-up had {warmup.non_2xx} non-2xx responses "
                f"and {warmup.socket_errors} socket errors"
            )
        return self._run(phase, script, base_url, duration_s, script_env or {})

    def _run(
        self, phase: str, script: Path, base_url: str, duration_s: int, script_env: dict[str, str]
    ) -> PhaseResult:
        command = [
            self.path,
            "--threads", str(self.threads),
            "--connections", str(self.connections),
            "--duration", f"{duration_s}s",
            "--timeout", WRK_TIMEOUT,
            "--script", str(script),
            base_url,
            "--", str(self.threads),
        ]  # fmt: skip
        try:
            completed = subprocess.run(
                command,
                env={**os.environ, **script_env},
                capture_output=True,
                text=True,
                timeout=duration_s + 60,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"wrk ({phase}) did not finish in {exc.timeout:.0f} s") from exc
        marker = "BENCH_RESULT "
        lines = [line for line in completed.stdout.splitlines() if line.startswith(marker)]
        if completed.returncode != 0 or len(lines) != 1:
            raise BenchError(
                f"wrk ({phase}) failed with status {completed.returncode}:\n"
                f"{completed.stdout}\n{completed.stderr}"
            )
        return PhaseResult.from_wrk(phase, json.loads(lines[0][len(marker) :]))


def measure_baseline(wrk: Wrk, body: bytes, duration_s: int, work_dir: Path, token: str) -> PhaseResult:
    """The baseline ignores the token; it is sent so that its requests are as big as the server's."""
    body_file = work_dir / "baseline-body.json"
    body_file.write_bytes(body)
    env = {**os.environ, "BENCH_BASELINE_BODY_FILE": str(body_file)}
    with UvicornServer("baseline", "baseline_app:app_from_env", BENCH_DIR, env, work_dir) as server:
        server.wait_until_ready("/baseline")
        return wrk.measure(
            "baseline", LUA_DIR / "baseline.lua", server.base_url, duration_s, {TOKEN_ENV: token}
        )


def measure_server(
    wrk: Wrk, duration_s: int, work_dir: Path
) -> tuple[PhaseResult, list[PhaseResult], dict[str, int]]:
    """The baseline and the CRUD phases; the baseline serves the exact bytes of a server read."""
    patient = benchmark_patient()
    create_body = _json_bytes(patient)
    update_template = _json_bytes({"resourceType": "Patient", "id": ID_PLACEHOLDER, **patient})
    (work_dir / "create.json").write_bytes(create_body)
    (work_dir / "update.json").write_bytes(update_template)

    env = {key: value for key, value in os.environ.items() if key != "MONGODB_URI"}
    env["FHIR_STORE"] = f"sqlite:///{work_dir / 'bench.db'}"
    settings = Settings.from_env(env)
    seed_token = mint_token(settings)
    factory = "fhir_server.app:app_from_env"
    with UvicornServer("fhir-server", factory, REPO_ROOT, env, work_dir) as server:
        server.wait_until_ready("/metadata")
        _log(f"creating {SEED_COUNT} Patients for the read and update phases ...")
        with FhirClient(server.port, seed_token) as client:
            ids = seed_patients(client, create_body, SEED_COUNT)
            read_body = client.request("GET", f"/Patient/{ids[0]}", None, expect=200)
            update_body = update_template.replace(ID_PLACEHOLDER.encode(), ids[0].encode())
            client.request("PUT", f"/Patient/{ids[0]}", update_body, expect=200)
        ids_file = work_dir / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")

        baseline = measure_baseline(wrk, read_body, duration_s, work_dir, mint_token(settings))

        script_env = {
            "create": {"BENCH_BODY_FILE": str(work_dir / "create.json")},
            "read": {"BENCH_IDS_FILE": str(ids_file)},
            "update": {
                "BENCH_BODY_FILE": str(work_dir / "update.json"),
                "BENCH_IDS_FILE": str(ids_file),
            },
        }
        phases = [
            wrk.measure(
                phase,
                LUA_DIR / f"{phase}.lua",
                server.base_url,
                duration_s,
                {**script_env[phase], TOKEN_ENV: mint_token(settings)},
            )
            for phase in PHASES
        ]
    sizes = {
        "create_request": len(create_body),
        "update_request": len(update_body),
        "read_response": len(read_body),
        "baseline_response": len(read_body),
    }
    return baseline, phases, sizes


def ratios(baseline: PhaseResult, phases: Sequence[PhaseResult]) -> dict[str, float]:
    return {
        phase.phase: round(phase.requests_per_s / baseline.requests_per_s, 3) for phase in phases
    }


def format_table(baseline: PhaseResult, phases: Sequence[PhaseResult]) -> str:
    header = f"{'phase':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'sock err':>10}"
    rows = [header, "-" * len(header)]
    for result in (baseline, *phases):
        rows.append(
            f"{result.phase:<10}{result.requests_per_s:>10.1f}{result.p50_ms:>9.2f}"
            f"{result.p99_ms:>9.2f}{result.non_2xx:>9d}{result.socket_errors:>10d}"
        )
    rows.append("")
    rows.append(f"baseline: {baseline.requests_per_s:.1f} req/s (GET /baseline, bare FastAPI)")
    for phase, ratio in ratios(baseline, phases).items():
        rows.append(f"ratio_{phase} = {phase} req/s / baseline req/s = {ratio:.3f}")
    return "\n".join(rows)


def write_results(
    path: Path,
    args: argparse.Namespace,
    wrk_version: str,
    baseline: PhaseResult,
    phases: Sequence[PhaseResult],
    sizes: dict[str, int],
) -> None:
    read = next(result for result in phases if result.phase == "read")
    ratio_by_phase = ratios(baseline, phases)
    document = {
        "benchmark": "crud",
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": wrk_version,
        },
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "threads": args.threads,
            "seeded_patients": SEED_COUNT,
            "store": "sqlite",
            "uvicorn_flags": ["--workers", "1", *UVICORN_FLAGS],
        },
        "body_bytes": sizes,
        "baseline": asdict(baseline),
        "phases": {result.phase: asdict(result) for result in phases},
        "ratios": ratio_by_phase,
        "targets": {
            "ratio_read_min": TARGET_RATIO_READ,
            "read_requests_per_s_min": TARGET_READ_RPS,
            "met": _targets_met(read, ratio_by_phase["read"]),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _targets_met(read: PhaseResult, ratio_read: float) -> bool:
    return ratio_read >= TARGET_RATIO_READ and read.requests_per_s >= TARGET_READ_RPS


def _git_commit() -> str | None:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None


def _wrk_version(wrk: str) -> str:
    completed = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    return (completed.stdout or completed.stderr).splitlines()[0].strip()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CRUD throughput of the FHIR server against a bare FastAPI baseline (wrk)."
    )
    parser.add_argument("--duration", type=int, default=20, help="seconds per phase (default 20)")
    parser.add_argument("--connections", type=int, default=32, help="open connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if ratio_read < {TARGET_RATIO_READ} or read < {TARGET_READ_RPS:.0f} req/s",
    )
    parser.add_argument(
        "--only-baseline",
        action="store_true",
        help="measure only the baseline, with a synthetic body (to work on this harness)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration < 1 or args.duration > 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if args.threads < 1 or args.connections < args.threads:
        parser.error("need at least one thread and at least one connection per thread")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        wrk = Wrk(ensure_wrk(), threads=args.threads, connections=args.connections)
        with tempfile.TemporaryDirectory(prefix="crud-bench-") as tmp:
            work_dir = Path(tmp)
            if args.only_baseline:
                body = synthetic_read_body(benchmark_patient())
                token = mint_token(Settings(store_url=f"sqlite:///{work_dir / 'keys.db'}"))
                baseline = measure_baseline(wrk, body, args.duration, work_dir, token)
                print(format_table(baseline, []))
                print(f"body: {len(body)} B (synthetic)")
                return _report_failures([baseline])
            baseline, phases, sizes = measure_server(wrk, args.duration, work_dir)
    except BenchError as exc:
        _log(f"crud_bench: {exc}")
        return 1
    except KeyboardInterrupt:
        _log("crud_bench: interrupted")
        return 130

    print(format_table(baseline, phases))
    print(
        f"bodies: create {sizes['create_request']} B, read and baseline "
        f"{sizes['read_response']} B, update {sizes['update_request']} B"
    )
    write_results(args.output, args, _wrk_version(wrk.path), baseline, phases, sizes)
    print(f"results written to {args.output}")

    if _report_failures([baseline, *phases]):
        return 1
    read = next(result for result in phases if result.phase == "read")
    ratio_read = ratios(baseline, phases)["read"]
    if args.check and not _targets_met(read, ratio_read):
        _log(
            f"CHECK FAILED: read {read.requests_per_s:.0f} req/s, ratio_read {ratio_read:.3f} "
            f"(targets: >= {TARGET_READ_RPS:.0f} req/s and ratio_read >= {TARGET_RATIO_READ})"
        )
        return 1
    return 0


def _report_failures(results: Sequence[PhaseResult]) -> int:
    """Log every phase that had an error; 1 if there was one, else 0."""
    failed = [result for result in results if result.failed]
    for result in failed:
        _log(
            f"FAILED: {result.phase} had {result.non_2xx} non-2xx responses "
            f"and {result.socket_errors} socket errors"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
