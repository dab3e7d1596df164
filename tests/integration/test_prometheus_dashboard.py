"""A real Prometheus scrapes a running service; every dashboard query and alert rule must work."""

import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from service.feature_loader import load_user_features, read_user_records
from tests.binaries import require_binary
from tests.conftest import free_port
from tests.deploy.dashboard import DashboardQuery, dashboard_queries, load_dashboard
from tests.deploy.test_prometheus_rules import RULES
from tests.integration.test_service_process import ServiceProcess, rank_body

SCRAPE_INTERVAL_SECONDS = 1
# Long enough to hold several 1 s scrapes, so rate() has at least two samples.
RATE_INTERVAL = "1m"
STARTUP_SECONDS = 60
TRAFFIC_ROUNDS = 2


class PrometheusServer:
    """A prometheus process on a free port that scrapes one service every second."""

    def __init__(self, target_port: int, workdir: Path) -> None:
        binary = require_binary("prometheus", "apt-get install prometheus")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
            },
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "ranker", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.base_url, timeout=10)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited early:\n{self.log_path.read_text()}")
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready in {STARTUP_SECONDS}s:\n{self.log_path.read_text()}")

    def query(self, promql: str) -> list[dict]:
        response = self.client.get("/api/v1/query", params={"query": promql})
        body = response.json()
        assert response.status_code == 200, f"{promql}: {body}"
        assert body["status"] == "success", f"{promql}: {body}"
        return body["data"]["result"]

    def wait_for_scrapes(self, count: int) -> None:
        """Wait until `count` more successful scrapes of the service have been stored."""
        initial = self._scrape_count()
        deadline = time.monotonic() + count * SCRAPE_INTERVAL_SECONDS + 30
        while self._scrape_count() < initial + count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} scrapes:\n{self.log_path.read_text()}")
            time.sleep(0.2)

    def _scrape_count(self) -> int:
        result = self.query('count_over_time(up{job="ranker"}[10m])')
        up = self.query('up{job="ranker"}')
        if not result or not up or up[0]["value"][1] != "1":
            return 0
        return int(result[0]["value"][1])

    def evaluated_rules(self) -> list[dict]:
        """Return the alert rules once Prometheus has evaluated each of them at least once."""
        deadline = time.monotonic() + 30
        while True:
            groups = self.client.get("/api/v1/rules").json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            if rules and all(rule["health"] != "unknown" for rule in rules):
                return rules
            if time.monotonic() > deadline:
                raise TimeoutError(f"rules not evaluated within 30 s: {rules}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def scraped_service(
    models_dir, bundle_dir, redis_server, data_dir, tmp_path_factory
) -> Iterator[tuple[ServiceProcess, PrometheusServer]]:
    load_user_features(read_user_records(bundle_dir / "users.jsonl"), redis_server.url, "ranker")
    workdir = tmp_path_factory.mktemp("prometheus")
    service = ServiceProcess(models_dir, redis_server.url, workdir / "service.log")
    prometheus = None
    try:
        prometheus = PrometheusServer(service.port, workdir)
        # Two rounds of traffic with scrapes between them. A labelled series first appears with
        # its count so far, and rate() counts only increases after that first sample.
        for _ in range(TRAFFIC_ROUNDS):
            prometheus.wait_for_scrapes(1)
            send_mixed_traffic(service, bundle_dir)
        prometheus.wait_for_scrapes(2)
        yield service, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        service.stop()


def send_mixed_traffic(service: ServiceProcess, bundle_dir: Path) -> None:
    """Send ranked, cached, degraded and rejected requests, so every panel has something to show."""
    user_ids = [json.loads(line)["user_id"] for line in _lines(bundle_dir / "users.jsonl")]
    catalog = [json.loads(line)["product_id"] for line in _lines(bundle_dir / "products.jsonl")]
    queries = ["cordless drill", "angle bracket", "deck screws", "cordless drill", "angle bracket"]

    for index, query in enumerate(queries * 4):
        # Known users, 10 to 50 candidates; repeated queries hit the query-embedding cache.
        body = rank_body(query, catalog[index : index + 10 + 2 * index], user_ids[index])
        assert service.client.post("/rank", json=body).status_code == 200
    degraded_bodies = [
        rank_body("hammer", catalog[:20], "no-such-user"),
        rank_body("hammer", [*catalog[:20], "not-in-the-bundle"], user_ids[0]),
    ]
    for body in degraded_bodies:
        response = service.client.post("/rank", json=body)
        assert response.status_code == 200
        assert response.json()["degraded"] is True
    invalid = service.client.post("/rank", json={"query": "", "candidates": []})
    assert invalid.status_code == 422


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def all_queries() -> list[DashboardQuery]:
    return dashboard_queries(load_dashboard())


@pytest.mark.parametrize("query", all_queries(), ids=lambda q: f"{q.panel}-{q.ref_id}")
def test_dashboard_query_returns_data(scraped_service, query: DashboardQuery):
    _, prometheus = scraped_service

    result = prometheus.query(query.promql(RATE_INTERVAL))
    values = [float(series["value"][1]) for series in result]

    assert result, f"no series for {query.panel} ({query.ref_id}): {query.expr}"
    assert any(not math.isnan(value) for value in values), f"only NaN for {query.panel}: {result}"


def test_stage_latency_has_every_stage(scraped_service):
    _, prometheus = scraped_service
    expr = next(q for q in all_queries() if q.panel == "Stage p99").promql(RATE_INTERVAL)

    stages = {series["metric"]["stage"] for series in prometheus.query(expr)}

    assert stages == {"user_features", "queue_wait", "encode_query", "product_features", "score", "order"}


def test_degraded_reasons_reach_prometheus(scraped_service):
    _, prometheus = scraped_service

    result = prometheus.query('sum by (reason) (ranker_degraded_responses_total{job="ranker"})')
    counts = {series["metric"]["reason"]: float(series["value"][1]) for series in result}

    assert counts == {"user_not_found": TRAFFIC_ROUNDS, "unknown_product": TRAFFIC_ROUNDS}


def test_alert_rules_evaluate_without_error(scraped_service):
    _, prometheus = scraped_service

    rules = prometheus.evaluated_rules()

    assert len(rules) == 5
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        assert rule["state"] == "inactive", f"{rule['name']} is {rule['state']} on healthy traffic"
