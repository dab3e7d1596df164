"""The service as a separate process under failure: bundle swaps under load, a Redis that dies,
restarts or hangs, overload, and admin access."""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from service.engines.manifest import read_current, write_current
from service.feature_loader import load_user_features, read_user_records
from tests.conftest import REPO_ROOT, RedisServer
from tests.integration.bundle_copies import flip_byte, link_bundle
from tests.integration.test_service_process import ServiceProcess

TOKEN = "test-admin-token-7f3a"
MAX_INFLIGHT = 4


@pytest.fixture(scope="module")
def deploy_models(tmp_path_factory, bundle_dir, int8_bundle_dir):
    models = tmp_path_factory.mktemp("deploy_models")
    link_bundle(bundle_dir, models, "good-a")
    link_bundle(int8_bundle_dir, models, "good-b")
    flip_byte(link_bundle(bundle_dir, models, "broken") / "product_embeddings.npy")
    write_current(models, "good-a")
    return models


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory, bundle_dir) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-resilience"))
    load_user_features(read_user_records(bundle_dir / "users.jsonl"), server.url, "ranker")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(deploy_models, own_redis, tmp_path_factory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        deploy_models,
        own_redis.url,
        tmp_path_factory.mktemp("logs") / "service.log",
        extra_env={
            "RANKER_ADMIN_TOKEN": TOKEN,
            "RANKER_BUNDLE_POLL_SECONDS": "0.2",
            "RANKER_MAX_INFLIGHT": str(MAX_INFLIGHT),
            # Generous: these tests check fallbacks of failures, not of a CPU shared with other jobs.
            "RANKER_DEADLINE_MS": "5000",
            "RANKER_REDIS_TIMEOUT_SECONDS": "0.1",
        },
    )
    yield process
    process.stop()


def admin(service, method, path, body=None, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return service.client.request(method, path, json=body, headers=headers)


def known_products(bundle_dir, n=60) -> list[str]:
    with open(bundle_dir / "products.jsonl") as lines:
        return [
            line.split('"product_id":"')[1].split('"')[0] for _, line in zip(range(n), lines, strict=False)
        ]


def a_user(bundle_dir) -> str:
    return next(iter(read_user_records(bundle_dir / "users.jsonl")))[0]


class Load:
    """Clients posting the same request in a loop until stopped; keeps every status and body."""

    def __init__(self, service, body: dict, clients: int) -> None:
        self.responses: list[tuple[int, dict]] = []
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(service.base_url, body)) for _ in range(clients)
        ]

    def _run(self, base_url: str, body: dict) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while not self.stopped.is_set():
                response = client.post("/rank", json=body)
                self.responses.append((response.status_code, response.json()))

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=60)


def serving(service) -> str:
    return admin(service, "GET", "/admin/bundle").json()["serving"]


def deploy(service, version: str) -> httpx.Response:
    return admin(service, "POST", "/admin/bundle", {"version": version})


def test_swap_under_load_one_bundle_each(service, bundle_dir):
    deploy(service, "good-a")
    body = {"query": "cordless drill", "candidates": [{"product_id": p} for p in known_products(bundle_dir)]}

    with Load(service, body, clients=3) as load:
        time.sleep(1.0)
        swap = deploy(service, "good-b")
        time.sleep(1.0)

    assert swap.status_code == 200, swap.text
    assert swap.json()["serving"] == "good-b"
    assert {status for status, _ in load.responses} == {200}
    scores_by_version: dict[str, set] = {}
    for _, answer in load.responses:
        scores = tuple((item["product_id"], item["score"]) for item in answer["items"])
        scores_by_version.setdefault(answer["bundle_version"], set()).add(scores)
    assert set(scores_by_version) == {"good-a", "good-b"}
    # Identical scores within a version, different across: no response mixed two bundles.
    assert all(len(variants) == 1 for variants in scores_by_version.values())
    assert scores_by_version["good-a"] != scores_by_version["good-b"]
    assert service.client.post("/rank", json=body).json()["bundle_version"] == "good-b"


def test_broken_bundle_rejected_while_old_serves(service):
    before = serving(service)

    rejected = deploy(service, "broken")

    assert rejected.status_code == 409
    error = rejected.json()["error"]
    assert error["code"] == "bundle_rejected"
    assert "product_embeddings.npy: sha256 mismatch" in error["message"]
    assert serving(service) == before
    metrics = service.client.get("/metrics").text
    assert 'ranker_bundle_reloads_total{result="rejected"}' in metrics


def test_pointer_move_is_followed(service, deploy_models):
    deploy(service, "good-a")
    write_current(deploy_models, "good-b")

    for _ in range(100):
        if serving(service) == "good-b":
            break
        time.sleep(0.1)

    assert serving(service) == "good-b"


def test_rollback_returns_to_previous(service, deploy_models):
    deploy(service, "good-a")
    deploy(service, "good-b")

    rolled = admin(service, "POST", "/admin/rollback")

    assert rolled.status_code == 200
    assert rolled.json()["serving"] == "good-a"
    assert read_current(deploy_models) == "good-a"


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN[:-1]])
def test_admin_needs_the_token(service, token):
    response = admin(service, "POST", "/admin/bundle", {"version": "good-a"}, token=token)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


def test_admin_rejects_path_like_versions(service):
    response = deploy(service, "../good-a")

    assert response.status_code == 422


def test_redis_restart_degrades_then_recovers_without_service_restart(service, own_redis, bundle_dir):
    user = a_user(bundle_dir)
    body = {
        "user_id": user,
        "query": "angle bracket",
        "candidates": [{"product_id": p} for p in known_products(bundle_dir, 30)],
    }
    assert service.client.post("/rank", json=body).json()["degraded"] is False

    with Load(service, body, clients=1) as load:
        time.sleep(0.5)
        own_redis.stop()
        time.sleep(1.5)
        own_redis.start()  # same port, empty: Redis here keeps nothing on disk
        load_user_features(read_user_records(bundle_dir / "users.jsonl"), own_redis.url, "ranker")
        for _ in range(100):
            if load.responses and load.responses[-1][1]["degraded"] is False:
                break
            time.sleep(0.1)

    statuses = {status for status, _ in load.responses}
    reasons = {reason for _, answer in load.responses for reason in answer["degraded_reasons"]}
    assert statuses == {200}
    assert "feature_store_unavailable" in reasons
    assert load.responses[-1][1]["degraded"] is False
    assert 'ranker_redis_errors_total{kind="connection"}' in service.client.get("/metrics").text


def test_hung_redis_answers_within_timeout_with_defaults(service, own_redis, bundle_dir):
    body = {
        "user_id": a_user(bundle_dir),
        "query": "angle bracket",
        "candidates": [{"product_id": p} for p in known_products(bundle_dir, 30)],
    }
    own_redis.pause()
    try:
        started = time.perf_counter()
        answer = service.client.post("/rank", json=body).json()
        elapsed = time.perf_counter() - started
    finally:
        own_redis.resume()

    assert answer["degraded_reasons"] == ["feature_store_timeout"]
    assert elapsed < 2.0  # the read gives up after RANKER_REDIS_TIMEOUT_SECONDS, not Redis's pace


def test_overload_gets_429_with_retry_after(service, bundle_dir):
    body = {
        "query": "white paint",
        "candidates": [{"product_id": p} for p in known_products(bundle_dir, 1000)],
    }
    responses: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=service.base_url, timeout=60) as client:
            responses.append(client.post("/rank", json=body))

    threads = [threading.Thread(target=post) for _ in range(6 * MAX_INFLIGHT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    assert 200 in statuses
    assert 429 in statuses
    overloaded = next(r for r in responses if r.status_code == 429)
    assert overloaded.headers["retry-after"] == "1"
    assert overloaded.json()["error"]["code"] == "overloaded"


def deploy_command(service, version: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "deploy", version, "--url", service.base_url],
        cwd=REPO_ROOT,
        env={**os.environ, "RANKER_ADMIN_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_command_calls_running_service(service):
    deploy(service, "good-a")

    result = deploy_command(service, "good-b")

    assert result.returncode == 0, result.stderr
    assert "now serves bundle good-b" in result.stderr
    assert serving(service) == "good-b"


def test_deploy_command_reports_rejection(service):
    result = deploy_command(service, "broken")

    assert result.returncode == 2
    assert "bundle_rejected" in result.stderr
