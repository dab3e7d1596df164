"""End to end: `ranker serve` as a separate process, real Redis, real HTTP."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from service.feature_loader import load_user_features, read_user_records
from service.features.user import UserFeatures, encode_user
from tests.conftest import REPO_ROOT, free_port
from training.data.adapters import load_home_depot
from training.evaluation import ndcg_at_k

STARTUP_SECONDS = 90


class ServiceProcess:
    def __init__(
        self, models_dir: Path, redis_url: str, log_path: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "RANKER_MODELS_DIR": str(models_dir),
            "RANKER_REDIS_URL": redis_url,
            "RANKER_REDIS_TIMEOUT_SECONDS": "0.2",
            "RANKER_PORT": str(self.port),
            **(extra_env or {}),
        }
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=open(log_path, "wb"),
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.base_url, timeout=30)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited early:\n{self.log_path.read_text()}")
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise TimeoutError(f"service not up in {STARTUP_SECONDS}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def redis_with_users(redis_server, bundle_dir):
    load_user_features(read_user_records(bundle_dir / "users.jsonl"), redis_server.url, "ranker")
    return redis_server


@pytest.fixture(scope="module")
def service(models_dir, redis_with_users, tmp_path_factory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        models_dir, redis_with_users.url, tmp_path_factory.mktemp("logs") / "service.log"
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def held_out(data_dir, trained_run) -> dict[str, list[tuple[str, float]]]:
    """Test-split queries with their judged (product_id, relevance), in file order."""
    test_queries = set(json.loads((trained_run / "split.json").read_text())["test"])
    frame = load_home_depot(data_dir).frame
    frame = frame[frame["query"].isin(test_queries)]
    return {
        q: list(zip(g["product_id"], g["relevance"], strict=True))
        for q, g in frame.groupby("query", sort=True)
    }


def rank_body(query: str, product_ids: list[str], user_id: str | None = None) -> dict:
    body = {"query": query, "candidates": [{"product_id": p} for p in product_ids]}
    if user_id is not None:
        body["user_id"] = user_id
    return body


def test_health(service):
    assert service.client.get("/health").json() == {"status": "ok"}


def test_ready_reports_state(service, bundle_dir):
    response = service.client.get("/ready")
    body = response.json()

    assert response.status_code == 200
    assert body["bundle_version"] == bundle_dir.name
    assert body["encoder_warmed"] is True
    assert body["execution_providers"] == {
        "encoder": "CPUExecutionProvider",
        "ranker": "CPUExecutionProvider",
    }
    assert body["user_features"]["source"] == "redis"
    assert body["user_features"]["reachable"] is True


def test_rank_returns_permutation(service, held_out, bundle_dir):
    query, judged = next(iter(held_out.items()))
    product_ids = [p for p, _ in judged]

    response = service.client.post("/rank", json=rank_body(query, product_ids, "u000001"))
    body = response.json()

    assert response.status_code == 200
    assert sorted(i["product_id"] for i in body["items"]) == sorted(product_ids)
    assert body["bundle_version"] == bundle_dir.name
    assert body["degraded"] is False
    assert set(body["items"][0]["task_scores"]) == {"click", "add_to_cart", "purchase"}


def test_server_timing_header(service, held_out):
    query, judged = next(iter(held_out.items()))

    response = service.client.post("/rank", json=rank_body(query, [p for p, _ in judged]))
    stages = [entry.split(";")[0].strip() for entry in response.headers["server-timing"].split(",")]

    assert stages == ["user_features", "queue_wait", "encode_query", "product_features", "score", "order"]


def test_same_request_same_order(service, held_out):
    query, judged = list(held_out.items())[1]
    body = rank_body(query, [p for p, _ in judged], "u000002")

    orders = [
        [i["product_id"] for i in service.client.post("/rank", json=body).json()["items"]] for _ in range(3)
    ]

    assert orders[0] == orders[1] == orders[2]


def test_users_can_get_different_orders(service, redis_with_users, bundle_dir, held_out):
    """Two users with opposite brand and category tastes; some held-out query must differ."""
    products = [json.loads(line) for line in (bundle_dir / "products.jsonl").read_text().splitlines()]
    brand_of = {p["product_id"]: p["brand"] for p in products}
    category_of = {p["product_id"]: p["category"] for p in products}
    client = redis.Redis.from_url(redis_with_users.url)
    differing = 0
    for query, judged in list(held_out.items())[:40]:
        product_ids = [p for p, _ in judged]
        first, second = product_ids[0], product_ids[-1]
        for user_id, liked in (("taste-a", first), ("taste-b", second)):
            features = UserFeatures(
                segment="pro",
                sessions=20,
                click_rate=0.4,
                add_to_cart_rate=0.1,
                purchase_rate=0.05,
                category_affinity={category_of[liked]: 0.9},
                brand_affinity={brand_of[liked]: 0.9},
                known=True,
            )
            client.set(f"ranker:user:v1:{user_id}", encode_user(features))
        orders = [
            [
                i["product_id"]
                for i in service.client.post("/rank", json=rank_body(query, product_ids, u)).json()["items"]
            ]
            for u in ("taste-a", "taste-b")
        ]
        differing += orders[0] != orders[1]
    client.close()

    assert differing > 0


def test_beats_sent_order_on_held_out(service, held_out):
    """NDCG@10 against the human judgements: the service's order versus the order sent."""
    model, sent = [], []
    for query, judged in held_out.items():
        relevance = dict(judged)
        product_ids = [p for p, _ in judged]
        items = service.client.post("/rank", json=rank_body(query, product_ids)).json()["items"]
        returned_gains = np.array([3 * relevance[i["product_id"]] for i in items])
        sent_gains = np.array([3 * relevance[p] for p in product_ids])
        model.append(ndcg_at_k(-np.arange(len(items)), returned_gains, 10))
        sent.append(ndcg_at_k(-np.arange(len(product_ids)), sent_gains, 10))
    model_mean = np.mean([v for v in model if v is not None])
    sent_mean = np.mean([v for v in sent if v is not None])

    assert len(model) >= 50
    assert model_mean > sent_mean, f"model NDCG@10 {model_mean:.4f} <= sent order {sent_mean:.4f}"


def test_metrics_show_stages(service, held_out):
    query, judged = next(iter(held_out.items()))
    service.client.post("/rank", json=rank_body(query, [p for p, _ in judged], "no-such-user"))

    text = service.client.get("/metrics").text

    for stage in ("user_features", "queue_wait", "encode_query", "product_features", "score", "order"):
        assert f'ranker_stage_duration_seconds_bucket{{le="0.001",stage="{stage}"}}' in text
    assert "ranker_request_duration_seconds_count" in text
    assert 'ranker_degraded_responses_total{reason="user_not_found"}' in text
    assert 'ranker_requests_total{route="/rank",status="200"}' in text
    assert "ranker_bundle_info{version=" in text
    assert 'ranker_execution_provider_info{model="encoder",provider="CPUExecutionProvider"} 1.0' in text


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"query": "   ", "candidates": [{"product_id": "a"}]}, "body.query"),
        ({"query": "drill", "candidates": []}, "body.candidates"),
        ({"query": "drill", "candidates": [{"product_id": "a"}, {"product_id": "a"}]}, "body"),
        ({"query": "drill", "candidates": [{"product_id": "a"}], "top_k": 0}, "body.top_k"),
        ({"query": "drill", "candidates": [{"product_id": "a"}], "colour": "red"}, "body.colour"),
        ({"query": 5, "candidates": [{"product_id": "a"}]}, "body.query"),
    ],
    ids=["blank-query", "no-candidates", "duplicate-ids", "top-k-zero", "unknown-field", "query-not-string"],
)
def test_invalid_request_422(service, body, location):
    response = service.client.post("/rank", json=body)
    error = response.json()["error"]

    assert response.status_code == 422
    assert error["code"] == "invalid_request"
    assert error["request_id"] == response.headers["x-request-id"]
    assert location in [d["location"] for d in error["details"]]


def test_too_many_candidates_422(service):
    body = rank_body("drill", [f"p{i}" for i in range(1001)])

    response = service.client.post("/rank", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "too_many_candidates"
    assert "RANKER_MAX_CANDIDATES" in response.json()["error"]["message"]


def test_malformed_json_422(service):
    response = service.client.post(
        "/rank", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_openapi_has_rank_example(service):
    schema = service.client.get("/openapi.json").json()

    assert "/rank" in schema["paths"]
    assert schema["components"]["schemas"]["RankRequest"]["examples"][0]["query"] == "angle bracket"


def test_snapshot_mode_without_redis(models_dir, bundle_dir, tmp_path, held_out):
    service = ServiceProcess(models_dir, "none", tmp_path / "service.log")
    try:
        ready = service.client.get("/ready").json()
        user_id = json.loads((bundle_dir / "users.jsonl").read_text().splitlines()[0])["user_id"]
        query, judged = next(iter(held_out.items()))
        response = service.client.post("/rank", json=rank_body(query, [p for p, _ in judged], user_id))
    finally:
        service.stop()

    assert ready["user_features"]["source"] == "snapshot"
    assert ready["ready"] is True
    assert response.status_code == 200
    assert response.json()["degraded"] is False
    assert "user features come from the bundle snapshot" in (tmp_path / "service.log").read_text()


def test_unreachable_redis_degrades(models_dir, tmp_path, held_out):
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    service = ServiceProcess(models_dir, dead_url, tmp_path / "service.log")
    try:
        ready = service.client.get("/ready")
        query, judged = next(iter(held_out.items()))
        response = service.client.post("/rank", json=rank_body(query, [p for p, _ in judged], "u000001"))
    finally:
        service.stop()

    assert ready.status_code == 503
    assert ready.json()["user_features"]["reachable"] is False
    assert response.status_code == 200
    assert response.json()["degraded_reasons"] == ["feature_store_unavailable"]


def test_oversized_body_413(service):
    body = rank_body("drill", [f"p{i:06d}-" + "x" * 200 for i in range(6000)])

    response = service.client.post("/rank", json=body)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_caller_request_id_echoed(service):
    response = service.client.get("/health", headers={"x-request-id": "frontend-42"})

    assert response.headers["x-request-id"] == "frontend-42"


def test_odd_request_id_replaced(service):
    response = service.client.get("/health", headers={"x-request-id": "x" * 500})

    assert len(response.headers["x-request-id"]) == 16


def test_wrong_method_405_allow(service):
    response = service.client.get("/rank")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"


def test_metrics_sum_over_workers(models_dir, tmp_path, held_out):
    """Two worker processes: every scrape must count every request, whichever worker serves the scrape."""
    port = free_port()
    env = {**os.environ, "RANKER_MODELS_DIR": str(models_dir), "RANKER_REDIS_URL": "none"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "service.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--workers", "2", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    query, judged = next(iter(held_out.items()))
    body = rank_body(query, [p for p, _ in judged])
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        ready = 0
        while ready < 2 and time.monotonic() < deadline:
            ready = log.read_text().count("Application startup complete")
            time.sleep(0.2)
        assert ready == 2, log.read_text()
        for _ in range(30):
            # A new connection each time, so that both workers get some of the requests.
            assert httpx.post(f"{base_url}/rank", json=body, timeout=30).status_code == 200
        scrapes = [httpx.get(f"{base_url}/metrics", timeout=30).text for _ in range(6)]
    finally:
        process.terminate()
        process.wait(timeout=30)

    for text in scrapes:
        assert 'ranker_requests_total{route="/rank",status="200"} 30.0' in text
        assert "ranker_request_duration_seconds_count 30.0" in text
        assert 'ranker_execution_provider_info{model="encoder",provider="CPUExecutionProvider"} 1.0' in text
