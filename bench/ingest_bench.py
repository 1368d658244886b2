"""Bundle ingest throughput of the FHIR server on SQLite, against the validation floor measured in
the same run.

Usage:
    python bench/ingest_bench.py [--resources 200000] [--clients 8] [--workers N] [--check]

What it does, all on the loopback interface:
  1. Reads the Synthea transaction bundles of ../shared/data/synthea (24 patients, 7,214
     resources) and makes the synthetic load: copies of those bundles in which every UUID (ids,
     fullUrls, urn:uuid references, Synthea's record-number identifiers) and every social security
     number is replaced by a fresh one, consistently within a copy, until there are at least
     --resources resources. The copies are made before anything is timed.
  2. Measures the validation floor: ``fhir.resources.R4B`` ``model_validate_json`` of every
     Synthea resource's JSON, one after the other in this process, twice; resources/s of the
     faster pass. That is what validation alone costs, with no HTTP, ids, indexes or storage.
  3. Starts the server (uvicorn --workers N, default one more than the CPUs; uvloop, httptools, no
     access log) on a fresh SQLite store in a temporary directory. One more: every worker waits for
     the store's single write lock for part of each bundle, and with one worker per CPU a CPU then
     idles (measured on 2 CPUs at 200,000 resources: 1.83 CPUs busy with 2 workers, 1.92 with 3).
  4. Phase "synthea": posts the 24 original bundles as transactions from --clients concurrent
     clients (Prefer: return=minimal) and times them end to end.
  5. Phase "synthetic": posts the copies the same way, into the same (growing) store.
  6. Checks that the store holds exactly what was posted (every version in the SQLite file, read
     through the storage class once the server has stopped: over HTTP the bench's facility would
     see only the records it holds, and a system history without a total), prints
     resources/s per phase, the validation floor, ratio = synthetic resources/s / floor, and the
     load average before and after (the machine is shared: measure when it is quiet), and writes
     bench/results/ingest.json.
Every request carries a bearer token of a "bench-facility" system client (bench/bench_auth.py),
minted afresh for each phase, the first one before the server starts.

Exit status: 0 when every bundle was accepted; 1 when one was not or the setup failed; with
--check, also 1 when the synthetic phase is below 1,500 resources/s or below 0.35 x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from random import Random

import httpx
import orjson
from fhir.resources.R4B import get_fhir_model_class

from bench_auth import bearer, mint_token
from fhir_server.settings import Settings
from fhir_server.storage.base import HistoryQuery
from fhir_server.storage.sqlite import SqliteStorage

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SYNTHEA = Path(__file__).resolve().parents[1].parent / "shared/data/synthea"
RESULTS_FILE = BENCH_DIR / "results" / "ingest.json"
HOST = "127.0.0.1"
TARGET_RATE = 1500.0
TARGET_RATIO = 0.35
SERVER_START_TIMEOUT_S = 90.0
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SSN = re.compile(rb"999-\d\d-\d{4}")


class BenchError(Exception):
    """A failure that ends the run with a one-line explanation instead of a traceback."""


@dataclass(frozen=True)
class Phase:
    name: str
    bundles: int
    resources: int
    seconds: float
    failed: int
    server_cpu_seconds: float = 0.0  # CPU the server processes used during the phase
    client_cpu_seconds: float = 0.0  # CPU this process (the clients) used during the phase

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def _log(message: str) -> None:
    print(f"[ingest_bench] {message}", file=sys.stderr, flush=True)


def load_synthea() -> list[bytes]:
    paths = sorted(SYNTHEA.glob("*.json")) if SYNTHEA.is_dir() else []
    if not paths:
        raise BenchError(f"no Synthea bundles in {SYNTHEA}")
    return [p.read_bytes() for p in paths]


def clone(raw: bytes, rng: Random) -> bytes:
    """``raw`` with fresh UUIDs (the same old UUID always gets the same new one) and SSNs."""
    fresh: dict[bytes, bytes] = {}

    def new_uuid(match: re.Match[bytes]) -> bytes:
        old = match.group(0)
        if old not in fresh:
            fresh[old] = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
        return fresh[old]

    copied = _UUID.sub(new_uuid, raw)
    return _SSN.sub(lambda _: f"999-{rng.randrange(100):02d}-{rng.randrange(10000):04d}".encode(), copied)


def synthetic_load(originals: list[bytes], counts: list[int], minimum: int, seed: int = 4) -> tuple[list[bytes], int]:
    rng = Random(seed)
    bundles: list[bytes] = []
    total = 0
    while total < minimum:
        for raw, count in zip(originals, counts, strict=True):
            bundles.append(clone(raw, rng))
            total += count
            if total >= minimum:
                break
    return bundles, total


def validation_floor(originals: list[bytes]) -> tuple[float, int]:
    """Resources/s of ``model_validate_json`` alone over every resource of the bundles (best of two)."""
    resources = [(e["resource"]["resourceType"], orjson.dumps(e["resource"]))
                 for raw in originals for e in orjson.loads(raw)["entry"]]
    models = {t: get_fhir_model_class(t) for t, _ in resources}
    best = 0.0
    for _ in range(2):
        started = time.perf_counter()
        for resource_type, raw in resources:
            models[resource_type].model_validate_json(raw)
        best = max(best, len(resources) / (time.perf_counter() - started))
    return best, len(resources)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Server:
    """``uvicorn --workers N`` on a fresh SQLite store; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, workers: int, work_dir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.workers = workers
        self.work_dir = work_dir
        self.log_path = work_dir / "server.log"
        self.db_path = work_dir / "ingest.db"
        self.env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
        self.env["FHIR_STORE"] = f"sqlite:///{self.db_path}"
        self.settings = Settings.from_env(self.env)
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        command = [sys.executable, "-m", "uvicorn", "--factory", "fhir_server.app:app_from_env",
                   "--app-dir", str(REPO_ROOT), "--host", HOST, "--port", str(self.port),
                   "--workers", str(self.workers), "--loop", "uvloop", "--http", "httptools",
                   "--no-access-log", "--log-level", "warning"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=self.env, cwd=self.work_dir, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the server exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/metadata", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise BenchError(f"the server did not start within {SERVER_START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its worker processes so far (Linux /proc)."""
        assert self.process is not None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == self.process.pid or ppid == self.process.pid:
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def post_all(server: Server, name: str, bundles: list[bytes], counts: list[int], clients: int,
             token: str) -> Phase:
    """Post every bundle as a transaction from ``clients`` threads; time from first send to last answer."""
    work: queue.Queue[int] = queue.Queue()
    for i in range(len(bundles)):
        work.put(i)
    failures: list[str] = []
    done = [0]
    lock = threading.Lock()
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal", **bearer(token)}

    def client() -> None:
        with httpx.Client(base_url=server.base_url, timeout=900) as http:
            while True:
                try:
                    i = work.get_nowait()
                except queue.Empty:
                    return
                response = http.post("/", content=bundles[i], headers=headers)
                with lock:
                    if response.status_code != 200:
                        failures.append(f"bundle {i}: {response.status_code} {response.text[:300]}")
                    else:
                        done[0] += counts[i]

    _log(f"{name}: posting {len(bundles)} bundles ({sum(counts)} resources) from {clients} clients ...")
    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu_before = server.cpu_seconds()
    client_before = time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before
    client_cpu = time.process_time() - client_before
    for failure in failures[:5]:
        _log(failure)
    return Phase(name, len(bundles), done[0], seconds, len(failures), cpu, client_cpu)


def stored_versions(db_path: Path) -> int:
    """Every version in the store, whoever holds it."""
    storage = SqliteStorage(str(db_path))
    try:
        total = storage.history(HistoryQuery(count=0)).total
    finally:
        storage.close()
    assert total is not None  # the SQLite store always counts a system history
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=200_000, help="size of the synthetic load (minimum)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1,
                        help="server worker processes (default: one more than the CPUs)")
    parser.add_argument("--check", action="store_true", help="exit 1 below the project's targets")
    args = parser.parse_args(argv)
    try:
        originals = load_synthea()
        counts = [len(orjson.loads(raw)["entry"]) for raw in originals]
        _log(f"making the synthetic load (at least {args.resources} resources) ...")
        copies, copied = synthetic_load(originals, counts, args.resources)
        copy_counts = [len(orjson.loads(raw)["entry"]) for raw in copies]
        _log("measuring the validation floor ...")
        floor, validated = validation_floor(originals)
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="ingest-bench-") as scratch:
            server = Server(args.workers, Path(scratch))
            token = mint_token(server.settings)  # stores the signing key first: every worker loads that one
            with server:
                synthea = post_all(server, "synthea", originals, counts, args.clients, token)
                synthetic = post_all(server, "synthetic", copies, copy_counts, args.clients,
                                     mint_token(server.settings))
            stored = stored_versions(server.db_path)
        load_after = os.getloadavg()
    except BenchError as error:
        _log(f"error: {error}")
        return 1
    posted = synthea.resources + synthetic.resources
    ratio = synthetic.rate / floor
    print(f"{'phase':<10} {'bundles':>8} {'resources':>10} {'seconds':>9} {'resources/s':>12} {'failed':>7} "
          f"{'server CPU ms/res':>18} {'server CPUs busy':>17} {'client CPUs busy':>17}")
    for phase in (synthea, synthetic):
        print(f"{phase.name:<10} {phase.bundles:>8} {phase.resources:>10} {phase.seconds:>9.1f} {phase.rate:>12.0f} "
              f"{phase.failed:>7} {phase.server_cpu_seconds * 1000 / max(phase.resources, 1):>18.2f} "
              f"{phase.server_cpu_seconds / phase.seconds:>17.2f} {phase.client_cpu_seconds / phase.seconds:>17.2f}")
    print(f"validation floor: {floor:.0f} resources/s (model_validate_json of {validated} resources, one thread)")
    print(f"ratio (synthetic / floor): {ratio:.2f}   server workers: {args.workers}   clients: {args.clients}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}   "
          f"after: {' '.join(f'{x:.2f}' for x in load_after)}   cpus: {os.cpu_count()}")
    print(f"stored versions: {stored} (posted {posted})")
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps({
        "phases": [{**asdict(p), "resources_per_s": p.rate} for p in (synthea, synthetic)],
        "validation_floor_per_s": floor, "ratio": ratio, "workers": args.workers, "clients": args.clients,
        "load_before": load_before, "load_after": load_after, "cpus": os.cpu_count(), "stored": stored,
        "machine": platform.platform(), "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=2) + "\n")
    failed = synthea.failed + synthetic.failed > 0 or stored != posted
    if failed:
        _log("some bundles were not accepted, or the store does not hold what was posted")
        return 1
    if args.check and (synthetic.rate < TARGET_RATE or ratio < TARGET_RATIO):
        _log(f"below target: {synthetic.rate:.0f} resources/s (target {TARGET_RATE:.0f}), ratio {ratio:.2f} "
             f"(target {TARGET_RATIO})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
