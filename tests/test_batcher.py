"""storage.shared.Batcher: the calls waiting at one moment share one run (a group commit)."""

from __future__ import annotations

import asyncio

import pytest

from storage.shared import Batcher


async def test_calls_waiting_together_share_one_run_and_hear_their_own_outcome():
    runs: list[list[int]] = []
    gate = asyncio.Event()

    async def run(items: list[int]) -> list:
        runs.append(items)
        await gate.wait()
        return [ValueError(i) if i == 3 else i * 10 for i in items]

    b = Batcher(run, inflight=1)
    first = asyncio.gather(*(b.call(i) for i in range(5)), return_exceptions=True)
    await asyncio.sleep(0.01)
    later = asyncio.gather(*(b.call(i) for i in range(5, 8)))  # while the first run is out
    await asyncio.sleep(0.01)
    assert runs == [[0, 1, 2, 3, 4]]  # one run in flight at most: the others wait
    gate.set()
    out = await first
    assert out[:3] + out[4:] == [0, 10, 20, 40] and isinstance(out[3], ValueError)
    assert await later == [50, 60, 70]
    assert runs == [[0, 1, 2, 3, 4], [5, 6, 7]]  # the waiting ones shared the next run


async def test_a_failed_run_fails_its_callers_only_and_drain_waits_for_what_is_queued():
    async def run(items: list[str]) -> list:
        if "boom" in items:
            raise ConnectionError("down")
        return items

    b = Batcher(run, inflight=2)
    with pytest.raises(ConnectionError):
        await b.call("boom")
    fut = b.submit("later")  # queued, not awaited
    await b.drain()
    assert fut.done() and fut.result() == "later"
