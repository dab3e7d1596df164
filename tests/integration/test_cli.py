"""The `ranker` command line: clear one-line errors instead of tracebacks."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, free_port


def ranker(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_commands():
    result = ranker("--help")

    assert result.returncode == 0
    for command in ("train", "export", "load-features", "serve", "up", "bench"):
        assert command in result.stdout


def test_load_features_dead_redis(bundle_dir):
    dead = f"redis://127.0.0.1:{free_port()}/0"

    result = ranker("load-features", "--models-dir", str(bundle_dir.parent), "--redis-url", dead)

    assert result.returncode == 2
    assert "Redis request failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_environment_setting():
    result = ranker("--help", env={"RANKER_LOG_FORMAT": "xml"})

    assert result.returncode == 2
    assert "RANKER_LOG_FORMAT" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_bundle(tmp_path):
    result = ranker("serve", "--models-dir", str(tmp_path), "--port", str(free_port()))

    assert result.returncode == 2
    assert "no bundle to serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_missing_run(tmp_path):
    result = ranker("export", "--run", str(tmp_path / "missing"), "--models-dir", str(tmp_path))

    assert result.returncode == 2
    assert "not a finished run folder" in result.stderr


@pytest.mark.parametrize("option", ["--users", "--epochs", "--max-queries"])
def test_train_rejects_zero_counts(option, tmp_path):
    result = ranker("train", "--data-dir", str(tmp_path), option, "0")

    assert result.returncode == 2
    assert "0 is not a positive integer" in result.stderr
