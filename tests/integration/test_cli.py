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
    for command in ("train", "export", "load-features", "serve", "deploy", "rollback", "up", "bench"):
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


@pytest.fixture()
def two_bundles(tmp_path, bundle_dir, int8_bundle_dir):
    from service.engines.manifest import write_current
    from tests.integration.bundle_copies import flip_byte, link_bundle

    link_bundle(bundle_dir, tmp_path, "good-a")
    link_bundle(int8_bundle_dir, tmp_path, "good-b")
    flip_byte(link_bundle(bundle_dir, tmp_path, "broken") / "ranker.onnx")
    write_current(tmp_path, "good-a")
    return tmp_path


def pointers(models) -> tuple[str, str | None]:
    previous = models / "PREVIOUS"
    return (
        models / "CURRENT"
    ).read_text().strip(), previous.read_text().strip() if previous.exists() else None


def test_deploy_then_rollback_moves_pointers(two_bundles):
    deployed = ranker("deploy", "good-b", "--models-dir", str(two_bundles))
    assert deployed.returncode == 0, deployed.stderr
    assert pointers(two_bundles) == ("good-b", "good-a")

    rolled = ranker("rollback", "--models-dir", str(two_bundles))
    assert rolled.returncode == 0, rolled.stderr
    assert pointers(two_bundles) == ("good-a", "good-b")


def test_deploy_broken_bundle_leaves_pointer(two_bundles):
    result = ranker("deploy", "broken", "--models-dir", str(two_bundles))

    assert result.returncode == 2
    assert "ranker.onnx: sha256 mismatch" in result.stderr
    assert "Traceback" not in result.stderr
    assert pointers(two_bundles) == ("good-a", None)


def test_rollback_without_previous(two_bundles):
    result = ranker("rollback", "--models-dir", str(two_bundles))

    assert result.returncode == 2
    assert "no previous bundle" in result.stderr


def test_deploy_url_unreachable(two_bundles):
    url = f"http://127.0.0.1:{free_port()}"

    result = ranker("deploy", "good-b", "--url", url, env={"RANKER_ADMIN_TOKEN": "t"})

    assert result.returncode == 2
    assert "cannot reach" in result.stderr


def test_deploy_url_needs_token(two_bundles):
    env = {**os.environ}
    env.pop("RANKER_ADMIN_TOKEN", None)

    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "deploy", "good-b", "--url", "http://127.0.0.1:1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "RANKER_ADMIN_TOKEN is not set" in result.stderr


def test_file_error_named_as_such(tmp_path):
    # --models-dir names a file, so creating the folder raises FileExistsError (an OSError).
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"")  # passes the finished-run check
    models = tmp_path / "models"
    models.write_text("not a folder")

    result = ranker("export", "--run", str(tmp_path / "run"), "--models-dir", str(models))

    assert result.returncode == 2
    assert "export failed" in result.stderr
    assert "Redis" not in result.stderr
    assert "Traceback" not in result.stderr
