"""Prometheus metrics of the service, all prefixed `ranker_`, on one registry per app.

Latency buckets run from 0.5 ms to 2.5 s: a cached query ranks in a few ms, a cold one with
1000 candidates in tens of ms, and anything past a second is an incident.

With several worker processes (`ranker serve --workers N`), PROMETHEUS_MULTIPROC_DIR is set and
prometheus-client keeps every value in a shared folder; /metrics then sums counters and
histograms over the workers (`exposition_registry`). The info gauges report the maximum over
live workers, which is 1 for every label set some worker serves.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
CANDIDATE_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 500, 1000, 2000)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "ranker_request_duration_seconds",
            "Time to answer POST /rank.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "ranker_stage_duration_seconds",
            "Time of one /rank pipeline stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "ranker_requests_total",
            "Answered HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.candidates = Histogram(
            "ranker_candidates_per_request",
            "Candidates sent in one /rank request.",
            buckets=CANDIDATE_BUCKETS,
            registry=r,
        )
        self.degraded = Counter(
            "ranker_degraded_responses_total",
            "Ranked responses with a fallback, by reason.",
            ["reason"],
            registry=r,
        )
        self.query_cache = Counter(
            "ranker_query_cache_requests_total",
            "Query embedding cache lookups by result.",
            ["result"],
            registry=r,
        )
        self.bundle_reloads = Counter(
            "ranker_bundle_reloads_total",
            "Attempts to serve a new bundle: success, or rejected by a check (the old one kept serving).",
            ["result"],
            registry=r,
        )
        self.redis_errors = Counter(
            "ranker_redis_errors_total",
            "Failed user feature reads from Redis by kind: timeout, connection, wrong_type.",
            ["kind"],
            registry=r,
        )
        self.inflight = Gauge(
            "ranker_inflight_requests",
            "POST /rank requests being answered now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.overloaded = Counter(
            "ranker_overload_rejections_total",
            "POST /rank requests rejected with 429 because too many were in flight.",
            registry=r,
        )
        self.bundle_info = Gauge(
            "ranker_bundle_info",
            "The bundle being served (value 1).",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.provider_info = Gauge(
            "ranker_execution_provider_info",
            "ONNX Runtime provider in use per model (value 1).",
            ["model", "provider"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.feature_source_info = Gauge(
            "ranker_user_feature_source_info",
            "Where user features come from: redis or snapshot (value 1).",
            ["source"],
            registry=r,
            multiprocess_mode="livemax",
        )

        # Labelled children used on every request, looked up once: labels() costs a few µs a call.
        self._children: dict[tuple[Histogram | Counter, str], Histogram | Counter] = {}

        # Export each label set at 0 from the start, so rate() and increase() see the first event.
        for result in ("success", "rejected"):
            self.bundle_reloads.labels(result=result)
        for kind in ("timeout", "connection", "wrong_type"):
            self.redis_errors.labels(kind=kind)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self._child(self.stage_duration, stage).observe(seconds)

    def count_degraded(self, reason: str) -> None:
        self._child(self.degraded, reason).inc()

    def count_query_cache(self, hit: bool) -> None:
        self._child(self.query_cache, "hit" if hit else "miss").inc()

    def _child(self, metric: Histogram | Counter, label: str) -> Histogram | Counter:
        """Return the child of a metric with one label; each metric's label values are few."""
        key = (metric, label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def set_bundle(self, version: str, providers: dict[str, str]) -> None:
        # Set the old label sets to 0 rather than removing them: in multiprocess mode a removed
        # child would keep its last value in the shared folder.
        for labels in _label_sets(self.bundle_info):
            self.bundle_info.labels(*labels).set(0)
        self.bundle_info.labels(version=version).set(1)
        for labels in _label_sets(self.provider_info):
            self.provider_info.labels(*labels).set(0)
        for model, provider in providers.items():
            self.provider_info.labels(model=model, provider=provider).set(1)

    def exposition_registry(self) -> CollectorRegistry:
        """Return the registry /metrics reads: all workers' values in multiprocess mode."""
        folder = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
        if not folder:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
        return registry


def _label_sets(gauge: Gauge) -> list[tuple[str, ...]]:
    return list(gauge._metrics)  # NOTE: prometheus-client has no public list of a metric's children
