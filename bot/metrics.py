"""Prometheus metrics, defined once; ``/metrics`` serves this registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from storage import StoreMetrics

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("memberbot_http_requests_total", "HTTP requests by route and status",
                   ["route", "method", "status"], registry=REGISTRY)
CALLBACK_LATENCY = Histogram("memberbot_callback_seconds", "WeChat/WeCom callback latency",
                             ["route"], registry=REGISTRY,
                             buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2, 4, 5))
STORE_UPDATE_LATENCY = Histogram("memberbot_store_update_seconds", "store.update latency",
                                 ["store"], registry=REGISTRY,
                                 buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1))
STORE_CONFLICTS = Counter("memberbot_store_conflicts_total", "version conflicts retried",
                          ["store"], registry=REGISTRY)
STORE_UNAVAILABLE = Counter("memberbot_store_unavailable_total",
                            "member updates refused by a store outage (busy, retry later)",
                            ["store"], registry=REGISTRY)
PUSHES = Counter("memberbot_pushes_total", "lifecycle pushes by kind and result",
                 ["kind", "result"], registry=REGISTRY)
JOB_SECONDS = Histogram("memberbot_job_seconds", "job run durations", ["job"],
                        registry=REGISTRY, buckets=(.1, .5, 1, 5, 10, 30, 60, 300, 1800))


class PrometheusStoreMetrics(StoreMetrics):
    """The storage contract's metrics hooks, exported: every backend alike."""

    def updated(self, kind: str, seconds: float) -> None:
        STORE_UPDATE_LATENCY.labels(kind).observe(seconds)

    def conflicted(self, kind: str, n: int) -> None:
        STORE_CONFLICTS.labels(kind).inc(n)

    def unavailable(self, kind: str) -> None:
        STORE_UNAVAILABLE.labels(kind).inc()


STORE_METRICS = PrometheusStoreMetrics()  # the app context installs it on its store
