"""docker-compose.yml: parsed by docker-compose, and every file it mounts exists.

`docker-compose config` validates the file against the Compose schema without a Docker engine.
Building the images and starting the stack need one, which these tests do not have.
"""

import subprocess

import pytest
import yaml

from tests.binaries import require_binary
from tests.conftest import REPO_ROOT

COMPOSE_FILES = {
    "cpu": ["docker-compose.yml"],
    "gpu": ["docker-compose.yml", "docker-compose.gpu.yml"],
}


@pytest.mark.parametrize("variant", COMPOSE_FILES)
def test_compose_config_valid(variant):
    compose = require_binary("docker-compose", "apt-get install docker-compose")
    arguments = [argument for name in COMPOSE_FILES[variant] for argument in ("-f", name)]

    result = subprocess.run(
        [compose, *arguments, "config"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    config = yaml.safe_load(result.stdout) if result.returncode == 0 else None

    assert result.returncode == 0, result.stderr
    assert set(config["services"]) == {"redis", "bundle", "ranker", "prometheus", "grafana"}
    expected_target = "service-gpu" if variant == "gpu" else "service"
    assert config["services"]["ranker"]["build"]["target"] == expected_target


def test_compose_mounts_existing_files():
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]

    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"


def test_compose_targets_exist_in_dockerfile():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    targets = {service["build"]["target"] for service in services.values() if "build" in service}

    for target in targets | {"service-gpu"}:
        assert f" AS {target}\n" in dockerfile, target
