"""Run the benchmark: stage floors in process, then the service under load over HTTP."""

import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.benchmark.http_load import run_load
from service.benchmark.stages import measure_stage_floors
from service.benchmark.workload import Workload, load_workload
from service.engines.bundle import load_bundle

logger = logging.getLogger(__name__)
CACHED_QUERY_POOL = 20
LOG_CLIENTS = 8


@dataclass(frozen=True)
class BenchOptions:
    models_dir: Path
    data_dir: Path
    redis_url: str | None
    requests: int  # per HTTP scenario
    floor_repeats: int
    output_dir: Path
    port: int
    bundle_version: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    candidates: int
    clients: int
    bodies: list[bytes]
    warmup: list[bytes]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_scenarios(workload: Workload, requests: int, rng: np.random.Generator) -> list[Scenario]:
    """Uncached scenarios use queries no earlier request sent, so the service's cache cannot hit."""
    fresh = list(rng.permutation(workload.distinct_queries()))
    if len(fresh) < 2 * requests + CACHED_QUERY_POOL:
        raise ValueError(
            f"--requests {requests} needs {2 * requests + CACHED_QUERY_POOL} distinct queries; lower it"
        )
    uncached_100, uncached_1000 = fresh[:requests], fresh[requests : 2 * requests]
    cached_pool = fresh[2 * requests : 2 * requests + CACHED_QUERY_POOL]
    log_queries = [workload.queries[i] for i in rng.integers(len(workload.queries), size=requests * 4)]
    body = workload.body
    # The query-log scenario runs last: its queries would otherwise warm the cache for the others.
    return [
        Scenario(
            "100 candidates, 1 client, query not cached",
            100,
            1,
            [body(rng, q, 100) for q in uncached_100],
            [],
        ),
        Scenario(
            "100 candidates, 1 client, query cached",
            100,
            1,
            [body(rng, cached_pool[i % CACHED_QUERY_POOL], 100) for i in range(requests)],
            [body(rng, q, 100) for q in cached_pool],
        ),
        Scenario(
            "1000 candidates, 1 client, query not cached",
            1000,
            1,
            [body(rng, q, 1000) for q in uncached_1000],
            [],
        ),
        Scenario(
            f"100 candidates, {LOG_CLIENTS} clients, query log",
            100,
            LOG_CLIENTS,
            [body(rng, q, 100) for q in log_queries],
            [],
        ),
    ]


def run_benchmark(options: BenchOptions) -> dict:
    rng = np.random.default_rng(options.seed)
    threads = int(os.environ.get("RANKER_INTRA_OP_THREADS", "1"))
    bundle = load_bundle(options.models_dir, options.bundle_version, "cpu", threads)
    workload = load_workload(options.data_dir, bundle.path)
    queries = list(rng.permutation(workload.distinct_queries()))
    logger.info("measuring stage floors in process (%d calls each)", options.floor_repeats)
    floors = {
        n: measure_stage_floors(bundle, queries, n, options.redis_url, options.floor_repeats)
        for n in (100, 1000)
    }
    scenarios = build_scenarios(workload, options.requests, rng)

    service = _start_service(options, bundle.version)
    try:
        results = {}
        for scenario in scenarios:
            logger.info("HTTP: %s (%d requests)", scenario.name, len(scenario.bodies))
            if scenario.warmup:
                run_load(options.port, scenario.warmup, 1)
            hits_before = _cache_counts(options.port)
            result = run_load(options.port, scenario.bodies, scenario.clients)
            hits_after = _cache_counts(options.port)
            results[scenario.name] = (scenario, result, _hit_rate(hits_before, hits_after))
    finally:
        service.terminate()
        service.wait(timeout=30)

    report = _report(options, bundle, floors, results)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    (options.output_dir / "bench.json").write_text(json.dumps(report, indent=2))
    _plot(report, results, options.output_dir / "latency.png")
    return report


def _start_service(options: BenchOptions, version: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "RANKER_MODELS_DIR": str(options.models_dir),
        "RANKER_BUNDLE_VERSION": version,
        "RANKER_REDIS_URL": options.redis_url or "none",
        "RANKER_PORT": str(options.port),
        "RANKER_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{options.port}/health", timeout=1):
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("the service exited during start-up; see its log above") from None
            time.sleep(0.3)
    process.terminate()
    raise TimeoutError("the service did not start within 120 s")


def _cache_counts(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = r'ranker_query_cache_requests_total\{result="(hit|miss)"\} ([0-9.e+]+)'
    return {result: float(value) for result, value in re.findall(pattern, text)}


def _hit_rate(before: dict[str, float], after: dict[str, float]) -> float:
    hits = after.get("hit", 0) - before.get("hit", 0)
    misses = after.get("miss", 0) - before.get("miss", 0)
    return hits / (hits + misses) if hits + misses else float("nan")


def _report(options: BenchOptions, bundle, floors: dict, results: dict) -> dict:
    floor_p50 = {
        n: {stage: float(np.median(s) * 1000) for stage, s in stages.items()} for n, stages in floors.items()
    }
    scenarios = {}
    for name, (scenario, result, hit_rate) in results.items():
        scenarios[name] = {
            "candidates": scenario.candidates,
            "clients": scenario.clients,
            "requests": len(result.latencies),
            "errors": sum(count for status, count in result.statuses.items() if status != 200),
            "p50_ms": result.percentile_ms(50),
            "p95_ms": result.percentile_ms(95),
            "p99_ms": result.percentile_ms(99),
            "requests_per_second": result.throughput,
            "query_cache_hit_rate": hit_rate,
            "server_stage_mean_ms": result.server_stages,
        }
    uncached = scenarios["100 candidates, 1 client, query not cached"]
    floor_sum = sum(floor_p50[100].values())
    return {
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "bundle": {"version": bundle.version, "precision": bundle.manifest.get("precision", "fp32")},
        "redis": options.redis_url is not None,
        "stage_floor_p50_ms": {str(n): v for n, v in floor_p50.items()},
        "stage_floor_sum_ms": {str(n): sum(v.values()) for n, v in floor_p50.items()},
        "scenarios": scenarios,
        "service_p50_over_floor_sum": uncached["p50_ms"] / floor_sum,
    }


def format_report(report: dict) -> str:
    hardware = report["hardware"]
    lines = [
        f"CPU: {hardware['cpu']}, {hardware['cores']} cores; bundle {report['bundle']['version']} "
        f"({report['bundle']['precision']}); Redis: {'yes' if report['redis'] else 'no (snapshot)'}",
        "",
        "Stage floors, p50 ms, each stage alone in process:",
        f"  {'stage':<18}{'100 cand.':>12}{'1000 cand.':>12}",
    ]
    for stage in report["stage_floor_p50_ms"]["100"]:
        lines.append(
            f"  {stage:<18}{report['stage_floor_p50_ms']['100'][stage]:>12.3f}"
            f"{report['stage_floor_p50_ms']['1000'][stage]:>12.3f}"
        )
    sums = report["stage_floor_sum_ms"]
    lines += [f"  {'sum':<18}{sums['100']:>12.3f}{sums['1000']:>12.3f}", "", "HTTP, whole /rank call:"]
    lines.append(f"  {'scenario':<46}{'p50':>8}{'p95':>8}{'p99':>8}{'req/s':>9}{'hits':>7}{'errors':>8}")
    for name, s in report["scenarios"].items():
        lines.append(
            f"  {name:<46}{s['p50_ms']:>8.2f}{s['p95_ms']:>8.2f}{s['p99_ms']:>8.2f}"
            f"{s['requests_per_second']:>9.1f}{s['query_cache_hit_rate']:>7.0%}{s['errors']:>8d}"
        )
    lines += [
        "",
        f"service p50 / sum of stage floors (100 candidates, not cached): "
        f"{report['service_p50_over_floor_sum']:.2f}",
    ]
    return "\n".join(lines)


def _plot(report: dict, results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed (train extra); no plot written")
        return
    figure, (cdf, timeline) = plt.subplots(1, 2, figsize=(13, 4.5))
    for name, (_, result, _) in results.items():
        latencies = np.sort(result.latencies * 1000)
        cdf.plot(latencies, np.arange(1, len(latencies) + 1) / len(latencies), label=name)
        timeline.plot(result.started_at, result.latencies * 1000, ".", markersize=2, label=name)
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms)")
    cdf.set_ylabel("share of requests")
    cdf.set_title("Latency distribution, whole /rank call")
    cdf.legend(fontsize=8)
    timeline.set_yscale("log")
    timeline.set_xlabel("seconds since the scenario began")
    timeline.set_ylabel("latency (ms)")
    timeline.set_title(f"{report['hardware']['cpu']}, {report['hardware']['cores']} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
