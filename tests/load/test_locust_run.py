"""A short headless Locust run against the real service, through load_tests/run.sh."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_service_process import ServiceProcess

pytestmark = pytest.mark.integration


def test_bounded_run_writes_report(models_dir, data_dir, tmp_path):
    if shutil.which("locust", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("locust is not installed; pip install -e '.[load]'")
    service = ServiceProcess(models_dir, "none", tmp_path / "service.log")
    output = tmp_path / "report"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env["RANKER_DATA_DIR"] = str(data_dir)
    try:
        result = subprocess.run(
            [str(REPO_ROOT / "load_tests" / "run.sh"), service.base_url, "2", "4s", str(output)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        service.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((output / "report.json").read_text())["summary"]
    locust = json.loads((output / "report.json").read_text())["locust"]

    assert summary["requests"] > 10
    assert summary["errors"] == 0
    assert locust["requests"] == summary["requests"]
    assert set(summary["stages_ms"]) == {
        "user_features", "queue_wait", "encode_query", "product_features", "score", "order"
    }  # fmt: skip
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert (output / "latency.png").is_file()
    assert (output / "report.md").read_text().startswith("# Load-test report")
