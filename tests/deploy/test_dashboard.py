"""The Grafana dashboard JSON: structure, and queries that name only exported metrics."""

import re

from tests.deploy.dashboard import dashboard_queries, load_dashboard
from tests.deploy.test_prometheus_rules import METRIC_NAME, exported_metric_names

# What the dashboard must show, as the metric each of these panels reads.
REQUIRED_METRICS = {
    "ranker_requests_total",
    "ranker_request_duration_seconds_bucket",
    "ranker_stage_duration_seconds_bucket",
    "ranker_candidates_per_request_bucket",
    "ranker_degraded_responses_total",
    "ranker_bundle_info",
    "ranker_bundle_reloads_total",
    "ranker_execution_provider_info",
    "ranker_redis_errors_total",
    "ranker_query_cache_requests_total",
    "ranker_inflight_requests",
}


def test_dashboard_has_unique_panel_ids():
    ids = [panel["id"] for panel in load_dashboard()["panels"]]

    assert len(ids) == len(set(ids))


def test_dashboard_queries_use_exported_metrics():
    queries = dashboard_queries(load_dashboard())
    named = {name for query in queries for name in METRIC_NAME.findall(query.expr)}

    assert not named - exported_metric_names(), sorted(named - exported_metric_names())
    assert REQUIRED_METRICS <= named, sorted(REQUIRED_METRICS - named)


def test_dashboard_latency_quantiles():
    exprs = [query.expr for query in dashboard_queries(load_dashboard())]
    overall = {q for e in exprs if "ranker_request_duration_seconds_bucket" in e for q in _quantiles(e)}
    per_stage = {q for e in exprs if "ranker_stage_duration_seconds_bucket" in e for q in _quantiles(e)}

    assert {"0.5", "0.95", "0.99"} <= overall
    assert {"0.5", "0.95", "0.99"} <= per_stage


def test_dashboard_panels_use_datasource_variable():
    dashboard = load_dashboard()
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}

    assert "datasource" in variables
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_rates_scoped_to_job():
    for query in dashboard_queries(load_dashboard()):
        for selector in re.findall(r"ranker_[a-z_]+\{([^}]*)\}", query.expr):
            assert 'job="ranker"' in selector, f"{query.panel}: {query.expr}"


def _quantiles(expr: str) -> list[str]:
    return re.findall(r"histogram_quantile\(([0-9.]+)", expr)
