"""Millions of pending timers cost disk (52-byte units), not memory.

Default slice: 400 000 timers spread over three days straight into the index; the resident-set
growth per pending timer after the first 200 000 (by then the bounded changed-slot cache has been
filled and emptied) is measured between two checkpoints and must stay a few bytes (an in-memory timer
queue needs well over 100 B per timer).
Slow: 1 000 000 timer messages through the store and the delivery service (index catch-up,
then the first minute of expiries delivered, none early, none twice)."""
from __future__ import annotations

import asyncio
import gc
import os

import pytest

from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.timer.index import TimerIndex
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE
from timerharness import Group, T0_MS

SPAN_MS = 3 * 86_400_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def due_of(i: int) -> int:
    """A spread of due times over three days (a multiplicative hash; deterministic)."""
    return T0_MS + 1 + (i * 2_654_435_761) % SPAN_MS


def fill_index(ix: TimerIndex, start: int, end: int) -> None:
    for i in range(start, end):
        ix.add(i, due_of(i), T0_MS + i // 1000)


@pytest.mark.parametrize("total", [pytest.param(400_000, id="400k"),
                                   pytest.param(1_000_000, id="1M", marks=pytest.mark.slow)])
def test_pending_timers_grow_disk_not_memory(tmp_path, total):
    warm = 200_000
    ix = TimerIndex(tmp_path)
    fill_index(ix, 0, warm)              # the 65 536-slot changed-slot cache fills and empties twice
    ix.checkpoint()                      # both measurements with the cache empty
    gc.collect()
    before = rss_bytes()
    fill_index(ix, warm, total)
    ix.checkpoint()
    gc.collect()
    growth_per_timer = (rss_bytes() - before) / (total - warm)
    print(f"{total} pending timers: RSS growth {growth_per_timer:.2f} B per timer, timer log {ix.log.end} B")
    assert growth_per_timer < 4
    assert ix.log.end >= total * 52
    # a one-minute window holds exactly the timers due in it
    lo = T0_MS + 3_600_000
    hi = lo + 60_000
    got, end = ix.collect((lo, 0), (hi, 0), total, 10**9)
    assert end == (hi, 0)
    want = sorted(i for i in range(total) if lo <= due_of(i) < hi)
    assert [e.queue_offset for e in sorted(got, key=lambda e: e.queue_offset)] == want and want
    assert all(lo <= e.fire_ms < hi for e in got)
    ix.close()
    again = TimerIndex(tmp_path)        # reopened from its checkpoint: nothing to relink
    assert again.next_queue_offset == total and again.relinked == 0
    assert sorted(again.collect((lo, 0), (hi, 0), total, 10**9)[0]) == sorted(got)
    again.close()


@pytest.mark.slow
def test_million_timers_through_store_and_service(tmp_path):
    total = 1_000_000
    g = Group(tmp_path)
    batch = []
    for i in range(total):
        due = T0_MS + 2_000 + (i * 2_654_435_761) % SPAN_MS
        batch.append(BatchItem(b"t%d" % i, properties={"TIMER_OUT_MS": str(due), "REAL_TOPIC": "Orders",
                                                       "REAL_QID": str(i % 4)}))
        if len(batch) == 1000:
            g.store.append_batch(TIMER_TOPIC, 0, batch, consolidate=False)
            batch = []
    cfg = DelayConfig(window_max=4096)
    svc = g.service("a", config=cfg, timer_log_segment_bytes=100 * 1024 * 1024)

    async def main():
        gc.collect()
        before = rss_bytes()
        await svc.recover()            # indexes the million records
        gc.collect()
        growth = (rss_bytes() - before) / total
        assert svc.index.next_queue_offset == total
        g.now_ms = T0_MS + 2_000 + 60_000
        while await svc.step() == 0:
            pass
        return growth
    growth = asyncio.run(main())
    print(f"1M timers through the service: RSS growth {growth:.2f} B per timer")
    assert growth < 16
    want = {b"t%d" % i for i in range(total) if (i * 2_654_435_761) % SPAN_MS <= 60_000}
    got = [m for q in range(4) for m in g.queue("Orders", q) if PROPERTY_MQBENCH_DELAY_SOURCE in m.properties]
    assert len(got) == len(want) and {m.body for m in got} == want
    assert all(m.store_timestamp_ms >= int(m.properties["TIMER_DEQUEUE_MS"]) for m in got)
