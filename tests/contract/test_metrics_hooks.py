"""The storage contract's metrics hooks, on every backend alike: each ``update`` reports its
latency once under the backend's ``kind``, and every version conflict the backend counts
reaches the hooks (``bot.metrics`` exports both on /metrics)."""

from __future__ import annotations

import asyncio

import pytest

from bot.metrics import STORE_METRICS, PrometheusStoreMetrics
from storage import Store, StoreMetrics, StoreUnavailable
from tests.contract.test_store_raw import bump


class Recorder(StoreMetrics):
    def __init__(self) -> None:
        self.updates: list[tuple[str, float]] = []
        self.conflicts: list[tuple[str, int]] = []
        self.outages: list[str] = []

    def updated(self, kind: str, seconds: float) -> None:
        self.updates.append((kind, seconds))

    def conflicted(self, kind: str, n: int) -> None:
        self.conflicts.append((kind, n))

    def unavailable(self, kind: str) -> None:
        self.outages.append(kind)


async def test_every_backend_reports_update_latency_and_conflicts_through_the_hooks(
        store: Store):
    assert isinstance(type(store).metrics, StoreMetrics)  # declared by the contract
    rec = store.metrics = Recorder()
    assert await store.update("m1", bump("m1"), key="k0") == {"n": 1}
    assert len(rec.updates) == 1 and rec.updates[0][0] == store.kind
    assert rec.updates[0][1] >= 0
    await store.update("m1", bump("m1"), key="k0")  # a replay is an update call too
    await asyncio.gather(*(store.update("m1", bump("m1"), key=f"k{i}") for i in range(1, 9)))
    assert len(rec.updates) == 10 and {k for k, _ in rec.updates} == {store.kind}
    assert sum(n for _, n in rec.conflicts) == store.conflicts  # each one it retried
    before = store.conflicts
    store.conflicts += 1  # what a backend does when it retries a conflict
    assert store.conflicts == before + 1 and rec.conflicts[-1] == (store.kind, 1)
    store.conflicts = 0  # a reset reports nothing
    assert sum(n for _, n in rec.conflicts) == before + 1

    def outage(m):  # an outage met inside the update: "busy, retry later"
        raise StoreUnavailable("the store went away")

    with pytest.raises(StoreUnavailable):
        await store.update("m1", outage, key="k-out")
    assert rec.outages == [store.kind] and len(rec.updates) == 11


def test_the_app_exports_the_hooks_to_prometheus():
    from bot.metrics import REGISTRY

    assert isinstance(STORE_METRICS, PrometheusStoreMetrics)

    def value(name: str, kind: str) -> float:
        return REGISTRY.get_sample_value(name, {"store": kind}) or 0.0

    names = ("memberbot_store_update_seconds_count", "memberbot_store_conflicts_total",
             "memberbot_store_unavailable_total")
    before = [value(n, "test-kind") for n in names]
    STORE_METRICS.updated("test-kind", 0.01)
    STORE_METRICS.conflicted("test-kind", 3)
    STORE_METRICS.unavailable("test-kind")
    assert [value(n, "test-kind") - b for n, b in zip(names, before, strict=True)] == [1, 3, 1]
