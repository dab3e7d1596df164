"""load_tests/report.py on generated samples whose summary is known in advance."""

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def load_module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "load_tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = load_module("report")


def write_samples(path: Path, count: int = 100) -> None:
    """Write `count` requests over 10 seconds: latency 1..count ms, every 10th one a 500,
    every 4th one (from index 1) degraded."""
    with open(path, "w") as output:
        for index in range(count):
            failed = index % 10 == 9
            sample = {
                "start": 1_000.0 + index * 10 / count,
                "latency_ms": float(index + 1),
                "status": 500 if failed else 200,
                "error": "status 500" if failed else None,
                "candidates": 40,
                "stages_ms": {} if failed else {"encode_query": 2.0, "score": float(index % 3)},
                "degraded_reasons": ["user_not_found"] if index % 4 == 1 else [],
            }
            output.write(json.dumps(sample) + "\n")


def test_summary_matches_known_samples(tmp_path):
    write_samples(tmp_path / "samples.jsonl")

    summary = report.summarize(report.read_samples(tmp_path / "samples.jsonl"))

    assert summary["requests"] == 100
    assert summary["errors"] == 10
    assert summary["errors_by_status"] == {"500": 10}
    # numpy's linear interpolation over 1..100 ms.
    assert summary["latency_ms"]["p50"] == pytest.approx(50.5)
    assert summary["latency_ms"]["p99"] == pytest.approx(99.01)
    assert summary["latency_ms"]["max"] == 100.0
    # The last request starts at 9.9 s and takes 100 ms.
    assert summary["duration_seconds"] == pytest.approx(10.0)
    assert summary["throughput_rps"] == pytest.approx(10.0)
    assert summary["stages_ms"]["encode_query"]["p95"] == 2.0
    assert list(summary["stages_ms"]) == ["encode_query", "score"]


def test_degraded_counted_on_successes(tmp_path):
    write_samples(tmp_path / "samples.jsonl")

    summary = report.summarize(report.read_samples(tmp_path / "samples.jsonl"))

    # Indexes 1, 5, ... 97 are degraded (25), but 9, 29, 49, 69 and 89 also failed: 20 count.
    assert summary["degraded_reasons"] == {"user_not_found": 20}
    assert summary["degraded_ratio"] == pytest.approx(20 / 90, abs=1e-4)


def test_report_writes_files(tmp_path):
    write_samples(tmp_path / "samples.jsonl")
    # Locust's --json-file entry: 100 requests of 1..100 ms, one per rounded bucket, over 10 s.
    locust_entry = {
        "name": "/rank",
        "method": "POST",
        "num_requests": 100,
        "num_failures": 10,
        "start_time": 1_000.0,
        "last_request_timestamp": 1_010.0,
        "response_times": {str(milliseconds): 1 for milliseconds in range(1, 101)},
    }
    (tmp_path / "locust.json").write_text(json.dumps([locust_entry]))

    exit_code = report.main(
        ["--samples", str(tmp_path / "samples.jsonl"), "--locust-json", str(tmp_path / "locust.json"),
         "--output", str(tmp_path / "out")]
    )  # fmt: skip
    markdown = (tmp_path / "out" / "report.md").read_text()
    saved = json.loads((tmp_path / "out" / "report.json").read_text())

    assert exit_code == 0
    assert (tmp_path / "out" / "latency.png").stat().st_size > 10_000
    assert "| 100 | 10.0 | 10.0 | 10 (10.00%) | 50.5 |" in markdown
    assert "figures (rounded buckets): 100 requests, 10 failures, 10.0 requests/s" in markdown
    assert saved["locust"]["p50_ms"] == 50.0
    assert saved["locust"]["p99_ms"] == 99.0
    assert saved["per_second"]["requests"] == [10.0] * 10


def test_empty_samples_rejected(tmp_path):
    (tmp_path / "samples.jsonl").write_text("")

    assert report.main(["--samples", str(tmp_path / "samples.jsonl"), "--output", str(tmp_path)]) == 2


def test_invalid_sample_line_named(tmp_path):
    (tmp_path / "samples.jsonl").write_text('{"start": 1}\n')

    with pytest.raises(ValueError, match="samples.jsonl:1: invalid sample"):
        report.read_samples(tmp_path / "samples.jsonl")
