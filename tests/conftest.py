"""Shared fixtures: the real data folder, a private redis-server, and a small trained bundle.

The bundle is trained once per test session on a seeded slice of the Home Depot data (about a
minute on 2 cores), exported like a production bundle, and shared by the integration tests.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("RANKER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))

# Size of the test bundle: large enough that the model learns, small enough for CI.
TEST_QUERIES = 1000
TEST_USERS = 300
TEST_EPOCHS = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "home-depot" / "train.csv.zip").is_file():
        pytest.fail(f"relevance data not found under {DATA_DIR}; set RANKER_DATA_DIR (see README.md)")
    return DATA_DIR


class RedisServer:
    """A redis-server process of the test's own on a free port; never the shared one.

    It can be stopped and started again on the same port, and paused (SIGSTOP) to play a Redis
    that accepts connections but never replies.
    """

    def __init__(self, workdir: Path, password: str | None = None, tls_cert: Path | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail(
                "redis-server is not installed; install it (apt-get install redis-server) as README.md says"
            )
        self.workdir = workdir
        self.password = password
        self.tls_cert = tls_cert  # a self-signed certificate with its key in the same PEM file
        self.port = free_port()
        auth = f":{password}@" if password else ""
        if tls_cert is None:
            self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        else:
            self.url = f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={tls_cert}"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        if self.tls_cert is None:
            arguments = [self.binary, "--port", str(self.port)]
        else:
            arguments = [self.binary, "--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            arguments += ["--tls-cert-file", str(self.tls_cert), "--tls-key-file", str(self.tls_cert)]
        arguments += ["--bind", "127.0.0.1", "--save", ""]
        arguments += ["--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            arguments += ["--requirepass", self.password]
        self.process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trained_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.config import OptimizerConfig, TrainConfig
    from training.pipeline import run_training
    from training.simulation.behaviour import SimulationConfig

    config = TrainConfig(
        data_dir=str(data_dir),
        max_queries=TEST_QUERIES,
        simulation=SimulationConfig(n_users=TEST_USERS),
        optimizer=OptimizerConfig(epochs=TEST_EPOCHS),
    )
    return run_training(config, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def models_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export import export_bundle

    models = tmp_path_factory.mktemp("exported_models")
    export_bundle(trained_run, models, set_current=True)
    return models


@pytest.fixture(scope="session")
def bundle_dir(models_dir: Path) -> Path:
    from service.engines.manifest import read_current

    return models_dir / read_current(models_dir)


@pytest.fixture(scope="session")
def int8_bundle_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run exported with int8 graphs: a second, different bundle (scores differ)."""
    from training.export import export_bundle

    models = tmp_path_factory.mktemp("int8_models")
    version = export_bundle(trained_run, models, set_current=True, precision="int8")
    return models / version
