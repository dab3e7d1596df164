"""Turn one Locust run into a load-test report: report.md, report.json and latency.png.

Input: the samples file that `locustfile.py --samples` writes (one JSON line per /rank request)
and, optionally, Locust's `--json-file` statistics for comparison. Latency percentiles here are
exact over the samples; Locust's own are computed from its rounded response-time buckets.

    python load_tests/report.py --samples reports/load/samples.jsonl \\
        --locust-json reports/load/locust.json --output reports/load
"""

import argparse
import json
import math
import platform
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PERCENTILES = (50, 95, 99)
STAGES = ("user_features", "queue_wait", "encode_query", "product_features", "score", "order")


@dataclass(frozen=True)
class Sample:
    start: float  # Unix time in seconds
    latency_ms: float
    status: int
    error: str | None
    candidates: int
    stages_ms: dict[str, float]
    degraded_reasons: list[str]


def read_samples(path: Path) -> list[Sample]:
    samples = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                samples.append(Sample(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as error:
                raise ValueError(f"{path}:{number}: invalid sample: {error}") from error
    if not samples:
        raise ValueError(f"{path} contains no samples; did the Locust run send any request?")
    return sorted(samples, key=lambda sample: sample.start)


def summarize(samples: list[Sample]) -> dict:
    """Return throughput, latency percentiles, errors, stage times and degraded counts."""
    first_start = samples[0].start
    last_end = max(sample.start + sample.latency_ms / 1000 for sample in samples)
    duration = last_end - first_start
    latencies = np.array([sample.latency_ms for sample in samples])
    errors = [sample for sample in samples if sample.error is not None]
    successful = [sample for sample in samples if sample.error is None]
    return {
        "requests": len(samples),
        "duration_seconds": round(duration, 2),
        "throughput_rps": round(len(samples) / duration, 1) if duration > 0 else math.nan,
        "errors": len(errors),
        "error_ratio": round(len(errors) / len(samples), 4),
        "errors_by_status": dict(Counter(str(sample.status) for sample in errors)),
        "latency_ms": _distribution(latencies),
        "candidates_mean": round(float(np.mean([sample.candidates for sample in samples])), 1),
        "stages_ms": {
            stage: _distribution(np.array([s.stages_ms[stage] for s in successful if stage in s.stages_ms]))
            for stage in _stage_names(successful)
        },
        "degraded_reasons": dict(
            Counter(reason for sample in successful for reason in sample.degraded_reasons).most_common()
        ),
        "degraded_ratio": round(
            sum(1 for sample in successful if sample.degraded_reasons) / max(len(successful), 1), 4
        ),
    }


def _stage_names(samples: list[Sample]) -> list[str]:
    seen = {stage for sample in samples for stage in sample.stages_ms}
    return [stage for stage in STAGES if stage in seen] + sorted(seen - set(STAGES))


def _distribution(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    summary = {"mean": float(np.mean(values))}
    summary.update({f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES})
    summary["max"] = float(np.max(values))
    return {key: round(value, 3) for key, value in summary.items()}


def read_locust_rank_stats(path: Path) -> dict | None:
    """Return Locust's own figures for POST /rank from its `--json-file` output, if the file exists.

    Locust writes that file after the last request, while its `--csv` statistics are rewritten
    only once a second and can miss the last second of a run (Locust 2.47).
    """
    if not path.is_file():
        return None
    for entry in json.loads(path.read_text()):
        if entry["name"] == "/rank" and entry["method"] == "POST":
            buckets = {float(milliseconds): count for milliseconds, count in entry["response_times"].items()}
            duration = entry["last_request_timestamp"] - entry["start_time"]
            return {
                "requests": entry["num_requests"],
                "failures": entry["num_failures"],
                "requests_per_second": round(entry["num_requests"] / duration, 1) if duration > 0 else None,
                **{f"p{p}_ms": _bucket_percentile(buckets, p) for p in PERCENTILES},
            }
    return None


def _bucket_percentile(buckets: dict[float, int], percentile: float) -> float:
    """Return the smallest bucket value that at least `percentile` % of the requests do not exceed."""
    total = sum(buckets.values())
    seen = 0
    for milliseconds in sorted(buckets):
        seen += buckets[milliseconds]
        if seen >= total * percentile / 100:
            return milliseconds
    return math.nan


def per_second(samples: list[Sample]) -> dict[str, list[float]]:
    """Return, for each whole second of the run, the request count and the p50 and p99 latency."""
    first_start = samples[0].start
    buckets: dict[int, list[float]] = {}
    for sample in samples:
        buckets.setdefault(int(sample.start - first_start), []).append(sample.latency_ms)
    seconds = sorted(buckets)
    return {
        "second": [float(second) for second in seconds],
        "requests": [float(len(buckets[second])) for second in seconds],
        "p50_ms": [float(np.percentile(buckets[second], 50)) for second in seconds],
        "p99_ms": [float(np.percentile(buckets[second], 99)) for second in seconds],
    }


def plot_latency(samples: list[Sample], path: Path) -> None:
    """Draw every request's latency over time with per-second p50 and p99, and throughput below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first_start = samples[0].start
    series = per_second(samples)
    figure, (latency_axis, rate_axis) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    latency_axis.scatter(
        [sample.start - first_start for sample in samples],
        [sample.latency_ms for sample in samples],
        s=2,
        alpha=0.25,
        color="tab:gray",
        label="one request",
    )
    # Each second's percentiles sit at the middle of that second, above its throughput bar.
    centers = [second + 0.5 for second in series["second"]]
    latency_axis.plot(centers, series["p50_ms"], color="tab:blue", label="p50 per second")
    latency_axis.plot(centers, series["p99_ms"], color="tab:red", label="p99 per second")
    latency_axis.set_yscale("log")
    latency_axis.set_ylabel("latency (ms, client side)")
    latency_axis.legend(loc="upper right")
    latency_axis.grid(True, which="both", alpha=0.3)
    rate_axis.bar(series["second"], series["requests"], width=1.0, align="edge", color="tab:green")
    rate_axis.set_ylabel("requests/s")
    rate_axis.set_xlabel("seconds since the first request")
    figure.suptitle("POST /rank latency over time")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_markdown(summary: dict, locust: dict | None, context: dict) -> str:
    latency = summary["latency_ms"]
    lines = [
        "# Load-test report",
        "",
        f"Target: {context['host']}. Load client: {context['client']}.",
        "",
        "| requests | duration s | requests/s | errors | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {summary['requests']} | {summary['duration_seconds']} | {summary['throughput_rps']} "
        f"| {summary['errors']} ({summary['error_ratio']:.2%}) | {latency['p50']} | {latency['p95']} "
        f"| {latency['p99']} | {latency['max']} |",
        "",
        f"Candidates per request: {summary['candidates_mean']} on average. Degraded responses: "
        f"{summary['degraded_ratio']:.1%} ({_format_counts(summary['degraded_reasons'])}).",
        "",
        "Stage times from the service's Server-Timing header, ms:",
        "",
        "| stage | mean | p50 | p95 | p99 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for stage, times in summary["stages_ms"].items():
        lines.append(f"| {stage} | {times['mean']} | {times['p50']} | {times['p95']} | {times['p99']} |")
    if summary["errors"]:
        lines += ["", f"Errors by status: {_format_counts(summary['errors_by_status'])}."]
    if locust is not None:
        lines += [
            "",
            f"Locust's own POST /rank figures (rounded buckets): {locust['requests']} requests, "
            f"{locust['failures']} failures, {locust['requests_per_second']} requests/s, "
            f"p50 {locust['p50_ms']:g} ms, p95 {locust['p95_ms']:g} ms, p99 {locust['p99_ms']:g} ms.",
        ]
    lines += ["", "![POST /rank latency over time](latency.png)", ""]
    return "\n".join(lines)


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=Path, required=True, help="JSON-lines file from locustfile --samples"
    )
    parser.add_argument(
        "--locust-json",
        type=Path,
        default=None,
        help="the file that --json-file wrote in the same Locust run (optional)",
    )
    parser.add_argument(
        "--output", type=Path, required=True, help="folder for report.md, report.json, latency.png"
    )
    parser.add_argument("--host", default="unknown", help="the service the run targeted, for the report text")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        samples = read_samples(args.samples)
    except (OSError, ValueError) as error:
        print(f"report.py: {error}", file=sys.stderr)
        return 2
    summary = summarize(samples)
    locust = read_locust_rank_stats(args.locust_json) if args.locust_json else None
    context = {
        "host": args.host,
        "client": f"Locust on {platform.node()}, Python {platform.python_version()}",
    }

    args.output.mkdir(parents=True, exist_ok=True)
    report = {"summary": summary, "locust": locust, "context": context, "per_second": per_second(samples)}
    (args.output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "report.md").write_text(format_markdown(summary, locust, context))
    plot_latency(samples, args.output / "latency.png")
    print((args.output / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
