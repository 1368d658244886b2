"""Search latency of the FHIR server on SQLite at about 50,000 and 500,000 resources.

Usage:
    python bench/search_bench.py [--patients 10000] [--duration 20] [--connections 4] [--threads 2]
                                 [--check]

What it does, all on the loopback interface and bounded in time:
  1. Plans the synthetic population of bench/population.py (10,000 patients, about 540,000
     resources) and loads its first 50,000 resources (5 per patient of --patients) into a fresh
     SQLite store in a temporary directory, through the server's own storage class, stamping
     (id, meta, and the record-holder label of the facility "bench-facility", as the server labels
     that facility's writes) and index extraction, 1,000 writes per transaction (one
     ``write_many``). Loading speed is reported in resources/s, with the time split between
     preparing (stamp, serialize, extract index values) and storing; resource validation, which
     this bulk path skips, is timed on a sample.
  2. Starts the real server on that store (uvicorn with the flags of crud_bench.py), checks every
     prepared request once (all must answer 200; the mean number of matches is reported), then
     measures each query with wrk for --duration seconds after a 2-second warm-up, with
     --connections concurrent clients, cycling through a few hundred prebuilt requests whose
     patients, codes, names and dates vary (drawn from the loaded part of the population).
     Queries: read-by-id (the baseline), token, patient + date range, string prefix, chained,
     _include, _revinclude, _has, composite, _sort=-date first page, and its next link. Every
     request carries a bearer token of a "bench-facility" system client (bench/bench_auth.py),
     minted afresh for each query, so it sees the records that facility holds: all of them.
  3. Stops the server, loads the rest of the population, and measures again.
  4. Prints p50, p95 and req/s per query at both sizes, p95(full)/p95(first) ("growth") and each
     query's p95 relative to read-by-id, and writes everything to bench/results/search.json,
     together with the load average around each measurement.

Exit status: 0 when every request answered 2xx; 1 on a non-2xx answer, a socket error or a failed
setup; with --check, also 1 unless every query's p95 at the full size is <= 25 ms and its growth
<= 2 (the targets of the search issue).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from bench_auth import BENCH_FACILITY, TOKEN_ENV, bearer, mint_token
from crud_bench import (
    HOST,
    UVICORN_FLAGS,
    WARMUP_S,
    WRK_TIMEOUT,
    BenchError,
    UvicornServer,
    _git_commit,
    _wrk_version,
    ensure_wrk,
)
from population import (
    ABHA_SYSTEM,
    BMI,
    BP_PANEL,
    DEFAULT_PATIENTS,
    DEFAULT_SEED,
    FASTING_GLUCOSE,
    FIRST_VISIT,
    GLUCOSE,
    HBA1C,
    HEART_RATE,
    HEIGHT,
    LAST_VISIT,
    LOINC,
    ORGANIZATIONS,
    PRACTITIONERS,
    WEIGHT,
    PatientSeed,
    Population,
    directory_resources,
    patient_resources,
    plan_population,
)

from consent.policy import holder_label, with_holders
from fhir_server.resources.validation import validate_resource
from fhir_server.search.extract import IndexExtractor
from fhir_server.search.registry import SearchRegistry
from fhir_server.service.stamping import dump, now_ms, stamp
from fhir_server.settings import Settings
from fhir_server.storage.base import ResourceWrite, StorageTransaction
from fhir_server.storage.sqlite import SqliteStorage

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PATHS_SCRIPT = BENCH_DIR / "lua" / "paths.lua"
RESULTS_FILE = BENCH_DIR / "results" / "search.json"

FIRST_STAGE_PER_PATIENT = 5  # 50,000 resources for the default 10,000 patients (and the directory at least)
LOAD_BATCH = 1000
REQUESTS_PER_QUERY = 400
CHECKED_PER_QUERY = 25
VALIDATION_SAMPLE = 2000
TARGET_P95_MS = 25.0
TOTAL_LIMIT = Settings().total_limit
TARGET_GROWTH = 2.0
BASELINE = "read"
LOINC_CODES = tuple(c[0] for c in (HEART_RATE, WEIGHT, HEIGHT, BMI, BP_PANEL, GLUCOSE, FASTING_GLUCOSE, HBA1C))


@dataclass(frozen=True, slots=True)
class LoadStats:
    resources: int
    seconds: float
    prepare_s: float  # stamping, serialization, index extraction
    store_s: float  # SQLite: current version, history and index rows, commits
    index_rows: int

    @property
    def per_s(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        per = 1e6 / self.resources if self.resources else 0.0
        return {
            "resources": self.resources,
            "seconds": round(self.seconds, 2),
            "resources_per_s": round(self.per_s, 1),
            "prepare_us_per_resource": round(self.prepare_s * per, 1),
            "store_us_per_resource": round(self.store_s * per, 1),
            "index_rows_per_resource": round(self.index_rows / self.resources, 2) if self.resources else 0.0,
        }


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    shape: str  # what the requests look like, for the report
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Measurement:
    query: str
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    mean_matches: float
    uncounted: int  # of the sampled requests, those with more matches than the server counts
    load_average: float

    @property
    def failed(self) -> bool:
        return self.non_2xx > 0 or self.socket_errors > 0


# --- loading -----------------------------------------------------------------------------------


class Loader:
    """Writes resources with their ids as given, the way the server writes a create by a
    ``BENCH_FACILITY`` caller: stamped meta with that facility as record holder, index values from
    the server's extractor, current version + history + index rows together."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._extractor = IndexExtractor(SearchRegistry.load())
        self._holders = [holder_label(BENCH_FACILITY)]

    def load(self, resources: Iterable[dict[str, object]]) -> LoadStats:
        storage = SqliteStorage(str(self._db_path))
        count = index_rows = 0
        prepare_s = store_s = 0.0
        started = time.perf_counter()
        try:
            for batch in _batches(resources, LOAD_BATCH):
                t0 = time.perf_counter()
                writes = [self._prepare(resource) for resource in batch]
                t1 = time.perf_counter()
                storage.run_in_transaction(_write_all(writes))
                t2 = time.perf_counter()
                prepare_s += t1 - t0
                store_s += t2 - t1
                count += len(writes)
                index_rows += sum(len(w.index) for w in writes)
        finally:
            storage.close()
        return LoadStats(count, time.perf_counter() - started, prepare_s, store_s, index_rows)

    def _prepare(self, resource: dict[str, object]) -> ResourceWrite:
        resource_type, resource_id = str(resource["resourceType"]), str(resource["id"])
        last_updated = now_ms()
        stamped = stamp(with_holders(resource, self._holders), resource_id, 1, last_updated)
        return ResourceWrite(resource_type, resource_id, 1, last_updated, False, dump(stamped),
                             self._extractor.extract(stamped))


def _write_all(writes: list[ResourceWrite]) -> Callable[[StorageTransaction], None]:
    def work(tx: StorageTransaction) -> None:
        tx.write_many(writes)

    return work


def _batches(items: Iterable[dict[str, object]], size: int) -> Iterator[list[dict[str, object]]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def validation_cost_us(population: Population) -> float:
    """Mean time to validate one resource with the R4B models, over the first patients' records."""
    sample = list(itertools.islice(
        (r for p in population.patients for r in patient_resources(population, p)), VALIDATION_SAMPLE))
    started = time.perf_counter()
    for resource in sample:
        validate_resource(str(resource["resourceType"]), resource)
    return (time.perf_counter() - started) / len(sample) * 1e6


class StagedPopulation:
    """The population as one stream cut in two: the first ``first`` resources, then the rest.
    Remembers which patients' records are complete, so queries only name loaded data."""

    def __init__(self, population: Population) -> None:
        self.population = population
        self.complete: list[PatientSeed] = []
        self._stream = self._resources()

    def _resources(self) -> Iterator[dict[str, object]]:
        yield from directory_resources(self.population)
        for patient in self.population.patients:
            yield from patient_resources(self.population, patient)
            self.complete.append(patient)

    def take(self, count: int | None) -> Iterator[dict[str, object]]:
        return self._stream if count is None else itertools.islice(self._stream, count)


# --- queries -----------------------------------------------------------------------------------


def _q(value: str) -> str:
    return quote(value, safe="/:-.")


def build_queries(patients: Sequence[PatientSeed], seed: int) -> list[Query]:
    """The measured requests, each query a few hundred variations drawn from ``patients``."""
    rng = random.Random(seed)
    picks = [rng.choice(patients) for _ in range(REQUESTS_PER_QUERY)]

    def paths(build: Callable[[PatientSeed], str]) -> tuple[str, ...]:
        return tuple(build(p) for p in picks)

    def date_window(_: PatientSeed) -> str:
        start = FIRST_VISIT + dt.timedelta(days=rng.randrange((LAST_VISIT - FIRST_VISIT).days - 180))
        end = start + dt.timedelta(days=rng.choice((90, 180, 365)))
        return f"date=ge{start.isoformat()}&date=lt{end.isoformat()}"

    def name_prefix(p: PatientSeed) -> str:
        name = rng.choice((p.family, p.given))
        return name[: rng.randint(3, len(name))]

    abha = f"{ABHA_SYSTEM}|"
    return [
        Query("read", "Patient/<id>", paths(lambda p: f"/Patient/{p.id}")),
        Query("token", "Observation?code=http://loinc.org|<code>",
              tuple(f"/Observation?code={_q(f'{LOINC}|{rng.choice(LOINC_CODES)}')}" for _ in picks)),
        Query("patient_date", "Observation?subject=Patient/<id>&date=ge<d1>&date=lt<d2>",
              paths(lambda p: f"/Observation?subject=Patient/{p.id}&{date_window(p)}")),
        Query("string_prefix", "Patient?name=<prefix>", paths(lambda p: f"/Patient?name={_q(name_prefix(p))}")),
        Query("chained", "Observation?subject.identifier=https://healthid.abdm.gov.in|<abha>",
              paths(lambda p: f"/Observation?subject.identifier={_q(abha + p.abha)}")),
        Query("include", "Observation?subject=Patient/<id>&_include=Observation:subject",
              paths(lambda p: f"/Observation?subject=Patient/{p.id}&_include=Observation:subject")),
        Query("revinclude", "Patient?identifier=https://healthid.abdm.gov.in|<abha>&_revinclude=Observation:subject",
              paths(lambda p: f"/Patient?identifier={_q(abha + p.abha)}&_revinclude=Observation:subject")),
        Query("has", "Patient?given=<given>&family=<family>&_has:Observation:subject:code=4548-4",
              paths(lambda p: f"/Patient?given={_q(p.given)}&family={_q(p.family)}"
                              f"&_has:Observation:subject:code={HBA1C[0]}")),
        Query("composite", "Observation?subject=Patient/<id>&component-code-value-quantity="
                           "http://loinc.org|8480-6$gt<value>",
              paths(lambda p: f"/Observation?subject=Patient/{p.id}&component-code-value-quantity="
                              + _q(f"{LOINC}|8480-6$" + rng.choice(("gt140", "gt150", "gt160"))))),
        Query("sort_date", "Observation?subject=Patient/<id>&_sort=-date&_count=10",
              paths(lambda p: f"/Observation?subject=Patient/{p.id}&_sort=-date&_count=10")),
    ]


class FhirGetter:
    """GETs over one keep-alive connection, for checking requests and following next links."""

    def __init__(self, port: int, token: str) -> None:
        self._connection = http.client.HTTPConnection(HOST, port, timeout=60)
        self._headers = {"Accept": "application/fhir+json", **bearer(token)}

    def __enter__(self) -> FhirGetter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._connection.close()

    def get(self, path: str) -> dict[str, object]:
        self._connection.request("GET", path, headers=self._headers)
        response = self._connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise BenchError(f"GET {path} answered {response.status}: {payload[:500]!r}")
        return json.loads(payload)


def next_link_query(getter: FhirGetter, sort_query: Query) -> Query:
    """The pages that the first pages' ``next`` links point at, as a query of their own."""
    paths = []
    for path in sort_query.paths:
        links = {link["relation"]: link["url"] for link in getter.get(path).get("link", [])}
        if "next" in links:
            parts = urlsplit(links["next"])
            paths.append(f"{parts.path}?{parts.query}")
    if not paths:
        raise BenchError("no first page of the _sort query had a next link")
    return Query("sort_next", "the next link of sort_date", tuple(paths))


def mean_matches(getter: FhirGetter, query: Query) -> tuple[float, int]:
    """Mean number of matching resources over the first requests (Bundle.total; a searchset without
    one has more matches than the server counts, ``TOTAL_LIMIT``), and how many had no total."""
    counts, uncounted = [], 0
    for path in query.paths[:CHECKED_PER_QUERY]:
        body = getter.get(path)
        if body.get("resourceType") != "Bundle":
            counts.append(1)
        elif "total" in body:
            counts.append(int(body["total"]))  # type: ignore[arg-type]
        else:
            counts.append(TOTAL_LIMIT)
            uncounted += 1
    return sum(counts) / len(counts), uncounted


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkRunner:
    path: str
    threads: int
    connections: int

    def measure(self, query: Query, base_url: str, duration_s: int, work_dir: Path,
                matches: tuple[float, int], token: str) -> Measurement:
        paths_file = work_dir / f"{query.name}.paths"
        paths_file.write_text("\n".join(query.paths) + "\n")
        env = {**os.environ, "BENCH_PATHS_FILE": str(paths_file), TOKEN_ENV: token}
        _log(f"  {query.name}: {WARMUP_S} s warm-up, {duration_s} s measured ...")
        warmup = self._run(query.name, base_url, WARMUP_S, env)
        if warmup["non_2xx"] or _socket_errors(warmup):
            raise BenchError(f"{query.name} warm-up had {int(warmup['non_2xx'])} non-2xx responses and "
                             f"{_socket_errors(warmup)} socket errors")
        load_average = os.getloadavg()[0]
        raw = self._run(query.name, base_url, duration_s, env)
        duration = raw["duration_us"] / 1e6
        return Measurement(
            query=query.name,
            requests=int(raw["requests"]),
            duration_s=round(duration, 3),
            requests_per_s=round(raw["requests"] / duration, 1),
            p50_ms=raw["p50_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p95_ms=raw["p95_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            non_2xx=int(raw["non_2xx"]),
            socket_errors=_socket_errors(raw),
            mean_matches=round(matches[0], 1),
            uncounted=matches[1],
            load_average=round(max(load_average, os.getloadavg()[0]), 2),
        )

    def _run(self, name: str, base_url: str, duration_s: int, env: dict[str, str]) -> dict[str, float]:
        command = [
            self.path, "--threads", str(self.threads), "--connections", str(self.connections),
            "--duration", f"{duration_s}s", "--timeout", WRK_TIMEOUT,
            "--script", str(PATHS_SCRIPT), base_url, "--", str(self.threads),
        ]  # fmt: skip
        try:
            completed = subprocess.run(command, env=env, capture_output=True, text=True,
                                       timeout=duration_s + 60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"wrk ({name}) did not finish in {exc.timeout:.0f} s") from exc
        marker = "BENCH_RESULT "
        lines = [line for line in completed.stdout.splitlines() if line.startswith(marker)]
        if completed.returncode != 0 or len(lines) != 1:
            raise BenchError(f"wrk ({name}) failed with status {completed.returncode}:\n"
                             f"{completed.stdout}\n{completed.stderr}")
        return json.loads(lines[0][len(marker):])


def _socket_errors(raw: dict[str, float]) -> int:
    return int(raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"])


def measure_stage(label: str, db_path: Path, work_dir: Path, runner: WrkRunner, queries: list[Query],
                  duration_s: int, workers: int) -> list[Measurement]:
    env = {key: value for key, value in os.environ.items() if key != "MONGODB_URI"}
    env["FHIR_STORE"] = f"sqlite:///{db_path}"
    settings = Settings.from_env(env)
    check_token = mint_token(settings)
    factory = "fhir_server.app:app_from_env"
    with UvicornServer(f"fhir-server-{label}", factory, REPO_ROOT, env, work_dir, workers) as server:
        server.wait_until_ready("/metadata")
        with FhirGetter(server.port, check_token) as getter:
            queries = [*queries, next_link_query(getter, queries[-1])]
            matches = {q.name: mean_matches(getter, q) for q in queries}
        _log(f"{label}: measuring {len(queries)} queries with {runner.connections} connections ...")
        return [runner.measure(q, server.base_url, duration_s, work_dir, matches[q.name], mint_token(settings))
                for q in queries]


# --- reporting ---------------------------------------------------------------------------------


def compare(first: Sequence[Measurement], full: Sequence[Measurement]) -> dict[str, dict[str, float]]:
    by_name = {m.query: m for m in first}
    read_full = next(m for m in full if m.query == BASELINE)
    result = {}
    for m in full:
        small = by_name[m.query]
        result[m.query] = {
            "p95_first_ms": small.p95_ms,
            "p95_full_ms": m.p95_ms,
            "growth": round(m.p95_ms / small.p95_ms, 2) if small.p95_ms else float("inf"),
            "p95_ratio_to_read": round(m.p95_ms / read_full.p95_ms, 2) if read_full.p95_ms else float("inf"),
        }
    return result


def targets_met(comparison: dict[str, dict[str, float]]) -> bool:
    return all(c["p95_full_ms"] <= TARGET_P95_MS and c["growth"] <= TARGET_GROWTH for c in comparison.values())


def format_stage(title: str, measurements: Sequence[Measurement]) -> str:
    header = f"{'query':<15}{'matches':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'load':>7}"
    rows = [title, header, "-" * len(header)]
    for m in measurements:
        matches = f">{TOTAL_LIMIT:,}" if m.uncounted == CHECKED_PER_QUERY else f"{m.mean_matches:.1f}"
        rows.append(f"{m.query:<15}{matches:>9}{m.requests_per_s:>9.1f}{m.p50_ms:>9.2f}"
                    f"{m.p95_ms:>9.2f}{m.p99_ms:>9.2f}{m.load_average:>7.2f}")
    return "\n".join(rows)


def format_comparison(first_size: int, full_size: int, comparison: dict[str, dict[str, float]]) -> str:
    header = (f"{'query':<15}{f'p95@{first_size:,}':>15}{f'p95@{full_size:,}':>15}{'growth':>8}"
              f"{'x read':>8}  target")
    rows = [header, "-" * len(header)]
    for name, c in comparison.items():
        ok = c["p95_full_ms"] <= TARGET_P95_MS and c["growth"] <= TARGET_GROWTH
        rows.append(f"{name:<15}{c['p95_first_ms']:>15.2f}{c['p95_full_ms']:>15.2f}{c['growth']:>8.2f}"
                    f"{c['p95_ratio_to_read']:>8.2f}  {'ok' if ok else 'MISSED'}")
    rows.append(f"targets: p95 <= {TARGET_P95_MS:.0f} ms at {full_size:,} resources and growth "
                f"(p95 full / p95 first) <= {TARGET_GROWTH:.0f}")
    return "\n".join(rows)


def write_results(path: Path, args: argparse.Namespace, wrk_version: str, population: Population,
                  stages: list[dict[str, object]], loading: dict[str, object],
                  comparison: dict[str, dict[str, float]], queries: list[Query]) -> None:
    document = {
        "benchmark": "search",
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "wrk": wrk_version,
        },
        "settings": {
            "patients": args.patients,
            "seed": args.seed,
            "duration_s": args.duration,
            "connections": args.connections,
            "threads": args.threads,
            "requests_per_query": REQUESTS_PER_QUERY,
            "store": "sqlite",
            "uvicorn_flags": ["--workers", str(args.workers), *UVICORN_FLAGS],
        },
        "queries": {q.name: q.shape for q in queries},
        "population": {"patients": len(population.patients)},
        "loading": loading,
        "stages": stages,
        "comparison": comparison,
        "targets": {"p95_max_ms": TARGET_P95_MS, "growth_max": TARGET_GROWTH, "met": targets_met(comparison)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="FHIR search latency on SQLite at two population sizes (wrk).")
    parser.add_argument("--patients", type=int, default=DEFAULT_PATIENTS,
                        help=f"population size in patients (default {DEFAULT_PATIENTS:,}: about 540,000 resources)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per query and size (default 20)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 unless every p95 <= {TARGET_P95_MS:.0f} ms at the full size and "
                             f"p95 full / p95 first <= {TARGET_GROWTH:.0f}")
    parser.add_argument("--keep-db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 10 <= args.patients <= 100_000:
        parser.error("--patients must be between 10 and 100,000")
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if args.threads < 1 or args.connections < args.threads:
        parser.error("need at least one thread and at least one connection per thread")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, runner: WrkRunner, work_dir: Path) -> int:
    population = plan_population(args.patients, args.seed)
    staged = StagedPopulation(population)
    db_path = work_dir / "search.db"
    loader = Loader(db_path)
    first_size = max(FIRST_STAGE_PER_PATIENT * args.patients, ORGANIZATIONS + PRACTITIONERS + 200)
    stages: list[dict[str, object]] = []
    results: list[list[Measurement]] = []
    loads: list[LoadStats] = []
    queries: list[Query] = []
    loaded = 0
    for label, take in (("first", first_size), ("full", None)):
        _log(f"{label}: loading {'the rest of the population' if take is None else f'{take:,} resources'} ...")
        stats = loader.load(staged.take(take))
        loaded += stats.resources
        loads.append(stats)
        _log(f"{label}: {stats.resources:,} resources in {stats.seconds:.1f} s ({stats.per_s:,.0f}/s); "
             f"store now {loaded:,} resources, {db_path.stat().st_size / 1e6:,.0f} MB")
        queries = build_queries(staged.complete, args.seed + loaded)
        measured = measure_stage(label, db_path, work_dir, runner, queries, args.duration, args.workers)
        results.append(measured)
        stages.append({"label": label, "resources": loaded, "patients_loaded": len(staged.complete),
                       "db_bytes": db_path.stat().st_size, "load": stats.as_dict(),
                       "measurements": {m.query: asdict(m) for m in measured}})
        print(format_stage(f"\n{label}: {loaded:,} resources", measured), flush=True)
    if args.keep_db:
        _copy_db(db_path, args.keep_db)
    total = LoadStats(sum(s.resources for s in loads), sum(s.seconds for s in loads),
                      sum(s.prepare_s for s in loads), sum(s.store_s for s in loads),
                      sum(s.index_rows for s in loads))
    validation_us = validation_cost_us(population)
    loading = {**total.as_dict(), "validation_us_per_resource_sampled": round(validation_us, 1),
               "batch": LOAD_BATCH}
    comparison = compare(results[0], results[1])
    print("\n" + format_comparison(stages[0]["resources"], loaded, comparison))  # type: ignore[arg-type]
    print(f"\nloading: {total.resources:,} resources at {total.per_s:,.0f}/s "
          f"(prepare {loading['prepare_us_per_resource']} us + store {loading['store_us_per_resource']} us "
          f"per resource, {loading['index_rows_per_resource']} index values each; validation, skipped by "
          f"the bulk load, would add {validation_us:.0f} us)")
    write_results(args.output, args, _wrk_version(runner.path), population, stages, loading, comparison,
                  queries)
    print(f"results written to {args.output}")
    failed = [m for stage in results for m in stage if m.failed]
    for m in failed:
        _log(f"FAILED: {m.query} had {m.non_2xx} non-2xx responses and {m.socket_errors} socket errors")
    if failed:
        return 1
    if args.check and not targets_met(comparison):
        _log("CHECK FAILED: a query missed p95 <= 25 ms at the full size or growth <= 2")
        return 1
    return 0


def _copy_db(db_path: Path, target: Path) -> None:
    """A consistent copy of the store (for looking at query plans after a run)."""
    with sqlite3.connect(db_path) as source, sqlite3.connect(target) as copy:
        source.backup(copy)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        runner = WrkRunner(ensure_wrk(), threads=args.threads, connections=args.connections)
        with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
            return run(args, runner, Path(tmp))
    except BenchError as exc:
        _log(f"search_bench: {exc}")
        return 1
    except KeyboardInterrupt:
        _log("search_bench: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
