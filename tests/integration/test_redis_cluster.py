"""User features in a Redis Cluster of three redis-server processes on free ports."""

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.engines.user_store import FEATURE_STORE_UNAVAILABLE, USER_NOT_FOUND, RedisUserStore
from service.feature_loader import load_user_features, read_user_records
from service.features.user import decode_user, user_key
from tests.conftest import REPO_ROOT, free_port, wait_for_port
from tests.integration.test_service_process import ServiceProcess, rank_body

PREFIX = "ranker"
CLUSTER_READY_SECONDS = 30


class RedisClusterNodes:
    """Three master nodes without replicas, each with its own client port and cluster bus port."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        binary = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if binary is None or cli is None:
            pytest.fail("redis-server and redis-cli are not installed; install Debian's redis-server package")
        self.ports = [free_port() for _ in range(size)]
        self.processes: list[subprocess.Popen] = []
        for port in self.ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            self.processes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port", str(port),
                        # The bus port is set explicitly (Redis 7), so it is free too, not port + 10000.
                        "--cluster-port", str(free_port()),
                        "--bind", "127.0.0.1",
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000",
                        "--save", "",
                        "--appendonly", "no",
                        "--dir", str(node_dir),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        for port in self.ports:
            wait_for_port(port, timeout=10)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._wait_until_ok()
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + CLUSTER_READY_SECONDS
        while time.monotonic() < deadline:
            states = []
            for port in self.ports:
                with redis.Redis(port=port) as node:
                    states.append(node.cluster("info")["cluster_state"])
            if all(state == "ok" for state in states):
                return
            time.sleep(0.2)
        raise TimeoutError(f"cluster on ports {self.ports} not ok within {CLUSTER_READY_SECONDS}s: {states}")

    def node_key_counts(self) -> list[int]:
        counts = []
        for port in self.ports:
            with redis.Redis(port=port) as node:
                counts.append(node.dbsize())
        return counts

    def stop_node(self, index: int) -> None:
        self.processes[index].terminate()
        self.processes[index].wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def user_records(bundle_dir) -> list[tuple[str, bytes]]:
    return read_user_records(bundle_dir / "users.jsonl")


@pytest.fixture(scope="module")
def loaded_cluster(cluster, user_records) -> RedisClusterNodes:
    written = load_user_features(user_records, cluster.url, PREFIX, batch_size=64, cluster=True)
    assert written == len(user_records)
    return cluster


def lookup_all(url: str, user_ids: list[str], timeout: float = 1.0):
    async def run():
        store = RedisUserStore(url, PREFIX, timeout, cluster=True)
        try:
            return [await store.lookup(user_id) for user_id in user_ids], await store.ping()
        finally:
            await store.close()

    return asyncio.run(run())


def test_bulk_load_spreads_over_nodes(loaded_cluster, user_records):
    counts = loaded_cluster.node_key_counts()

    assert sum(counts) == len(user_records)
    assert all(count > 0 for count in counts), counts


def test_cluster_lookup_every_user(loaded_cluster, user_records):
    user_ids = [user_id for user_id, _ in user_records]

    results, reachable = lookup_all(loaded_cluster.url, user_ids)

    assert reachable is True
    for (user_id, payload), result in zip(user_records, results, strict=True):
        assert result.degraded_reason is None, user_id
        assert result.features == decode_user(payload), user_id


def test_cluster_lookup_missing(loaded_cluster):
    results, _ = lookup_all(loaded_cluster.url, ["no-such-user"])

    assert results[0].degraded_reason == USER_NOT_FOUND


def test_stopped_node_degrades_its_keys(tmp_path, user_records):
    nodes = RedisClusterNodes(tmp_path)
    try:
        load_user_features(user_records, nodes.url, PREFIX, cluster=True)
        # The last node's keys are unreachable once it stops; the other nodes keep serving theirs.
        with redis.Redis(port=nodes.ports[-1]) as node:
            lost_key = next(node.scan_iter(f"{PREFIX}:user:v1:*"))
        lost_user = lost_key.decode().rsplit(":", 1)[1]
        nodes.stop_node(len(nodes.ports) - 1)

        started = time.monotonic()
        results, reachable = lookup_all(nodes.url, [lost_user], timeout=0.2)
        elapsed = time.monotonic() - started
    finally:
        nodes.stop()

    assert results[0].degraded_reason == FEATURE_STORE_UNAVAILABLE
    assert reachable is False
    # The cluster client retries once without backoff, so the fallback comes quickly.
    assert elapsed < 3, elapsed


def test_user_key_lands_on_owner_node(loaded_cluster, user_records):
    user_id = user_records[0][0]
    key = user_key(PREFIX, user_id)

    with redis.Redis(port=loaded_cluster.ports[0]) as node:
        slot = node.cluster("keyslot", key)
        owners = [port for port in loaded_cluster.ports if _owns_slot(port, slot)]
    with redis.Redis(port=owners[0]) as owner:
        stored = owner.get(key)

    assert len(owners) == 1
    assert stored == user_records[0][1]


def _owns_slot(port: int, slot: int) -> bool:
    with redis.Redis(port=port) as node:
        myself = next(n for n in node.cluster("nodes").values() if "myself" in n["flags"])
    return any(int(first) <= slot <= int(last) for first, last in myself["slots"])


def test_cli_and_service_with_cluster(cluster, models_dir, bundle_dir, tmp_path, monkeypatch):
    loaded = subprocess.run(
        [sys.executable, "-m", "service.cli", "load-features", "--redis-url", cluster.url, "--redis-cluster",
         "--redis-key-prefix", "cli", "--models-dir", str(models_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    user_id = json.loads((bundle_dir / "users.jsonl").read_text().splitlines()[0])["user_id"]
    catalog_lines = (bundle_dir / "products.jsonl").read_text().splitlines()
    product_ids = [json.loads(line)["product_id"] for line in catalog_lines[:20]]

    monkeypatch.setenv("RANKER_REDIS_CLUSTER", "true")
    monkeypatch.setenv("RANKER_REDIS_KEY_PREFIX", "cli")
    service = ServiceProcess(models_dir, cluster.url, tmp_path / "service.log")
    try:
        ready = service.client.get("/ready").json()
        response = service.client.post("/rank", json=rank_body("cordless drill", product_ids, user_id))
    finally:
        service.stop()

    assert ready["user_features"]["reachable"] is True
    assert response.status_code == 200
    assert response.json()["degraded_reasons"] == []
    assert "user features from Redis Cluster" in (tmp_path / "service.log").read_text()
