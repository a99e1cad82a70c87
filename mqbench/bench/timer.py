"""``mqbench bench timer``: timer (arbitrary delay) delivery precision and expiry-burst throughput.

For each ``pending`` count, on one fresh one-replica Raft group (``ReplicatedGroup``, durability
``memory``; every re-put goes through Raft like a client put) with the ``DelayService`` wired as the
broker wires it (``LeaderDelay``: started as leader, woken on commit):

1. ``pending`` timers are put (batches of 1000, the broker's rewrite applied), due 1 hour to 3 days
   ahead (seeded) so they stay pending; the service indexes them (the catch-up time is reported).
2. ``probes`` timers are put one by one, due spread evenly over ``probe_seconds`` starting 3 s
   later. For each, the signed delivery error = the time its re-put was acknowledged (committed and
   applied) - its requested TIMER_DELIVER_MS. Negative = early. Percentiles are over messages.
3. ``burst`` timers due at the same millisecond (put beforehand in batches): burst throughput =
   burst / (last acknowledged re-put - due time), and the last one's lateness. The burst's log
   bytes per second are divided by this disk's write+fdatasync bandwidth measured in the same run,
   and ``burst_cpu_us_per_msg`` is this process's CPU (it holds the group and the service) per
   delivered message from the due time to the last acknowledgement.

Time is the wall clock (ms). Anchor: RocketMQ 5 rounds a timer down to its 1000 ms precision and
so delivers up to 1 s early (bench-anchors section 4.2); ours must show 0 early. Bounded: every
wait has a timeout (index catch-up 1200 s, probes ``probe_seconds`` + 60 s, burst 600 s).
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from mqbench.bench.common import (bench_document, fmt_ratio, limits_line, measure_limits, own_cpu_s, percentile,
                                  ratio, us_per_msg)
from mqbench.errors import MqbenchError, UserError
from mqbench.output import table
from mqbench.broker.formats.properties import PROPERTY_TIMER_DELIVER_MS

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MB = 1_000_000
ANCHOR_ROCKETMQ_MAX_EARLY_MS = 1000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _timer_item(topic: str, deliver_ms: int, body: bytes, now_ms: int, config):
    from mqbench.broker.formats.batch import BatchItem
    from mqbench.broker.formats.record import Message
    from mqbench.broker.timer import rewrite_for_delay

    stored = rewrite_for_delay(Message(topic, body, {PROPERTY_TIMER_DELIVER_MS: str(deliver_ms)}), now_ms=now_ms,
                               config=config)
    return BatchItem(body, properties=stored.properties)


async def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise MqbenchError(f"timer bench: timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _case(root: Path, pending: int, probes: int, probe_seconds: float, burst: int, seed: int) -> dict:
    from mqbench.broker.server.replicated import ReplicatedGroup
    from mqbench.broker.formats.record import Message
    from mqbench.broker.formats.timer_formats import TIMER_TOPIC
    from mqbench.broker.timer import DelayConfig, rewrite_for_delay
    from mqbench.broker.timer.wiring import LeaderDelay

    rng = random.Random(seed)
    config = DelayConfig()
    group = await ReplicatedGroup.open(root, self_id=1, peers={1: ("127.0.0.1", 0)}, durability="memory",
                                       tick_ms=10, heartbeat_ms=20, election_ms=200)
    acks: dict[str, tuple[int, int]] = {}

    def delivered(source: str, due_ms: int, acked_ms: int) -> None:
        acks[source] = (due_ms, acked_ms)

    delay = LeaderDelay(group, config=config, on_delivered=delivered)
    group.on_role_change = delay.on_role_change
    group.on_commit = delay.on_commit
    try:
        await _wait_until(lambda: group.leader_ready, 10, "leadership")
        delay.on_role_change(group.role, group.term, group.leader_id)
        # 1. pending timers
        t = time.perf_counter()
        for start in range(0, pending, 1000):
            now = wall_ms()
            items = [_timer_item("Bench", now + HOUR_MS + rng.randrange(3 * DAY_MS - HOUR_MS), b"p%d" % i, now, config)
                     for i in range(start, min(pending, start + 1000))]
            await group.put_batch(TIMER_TOPIC, 0, items, consolidate=False)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        await _wait_until(lambda: delay.service is not None and delay.service.index is not None
                          and delay.service.index.next_queue_offset >= pending, 1200, "the index catch-up")
        index_s = time.perf_counter() - t
        # 2. probes, one put each
        requested: dict[str, int] = {}
        first_due = wall_ms() + 3000
        for i in range(probes):
            at = first_due + int(i * probe_seconds * 1000 / max(1, probes))
            result = await group.put(rewrite_for_delay(Message("Probe", b"probe%d" % i, {PROPERTY_TIMER_DELIVER_MS: str(at)}),
                                                       now_ms=wall_ms(), config=config))
            requested[f"T:{result.queue_offset}"] = at
        await _wait_until(lambda: all(k in acks for k in requested), probe_seconds + 60, "the probes")
        errors = sorted(acks[k][1] - at for k, at in requested.items())
        # 3. a burst due at one millisecond
        burst_due = wall_ms() + 3000 + burst // 4  # room to store the burst on a busy machine
        before = set(acks)
        for start in range(0, burst, 1000):
            now = wall_ms()
            items = [_timer_item("Burst", burst_due, b"b%d" % i, now, config)
                     for i in range(start, min(burst, start + 1000))]
            await group.put_batch(TIMER_TOPIC, 0, items, consolidate=False)
        if wall_ms() >= burst_due:
            raise UserError("timer bench: the burst was not stored before it was due; use a smaller --burst")
        log_start = group.store.log.end_offset
        await asyncio.sleep(max(0.0, (burst_due - wall_ms()) / 1000 - 0.05))
        cpu_start = own_cpu_s()
        await _wait_until(lambda: len(acks) - len(before) >= burst, 600, "the burst")
        burst_cpu_s = own_cpu_s() - cpu_start
        burst_log_bytes = group.store.log.end_offset - log_start
        burst_acks = sorted(a for s, (_, a) in acks.items() if s not in before)
        burst_span_ms = max(1, burst_acks[-1] - burst_due)
        stats = delay.service.stats
        return {
            "pending_timers": pending, "pending_load_s": round(load_s, 2), "index_catch_up_s": round(index_s, 2),
            "probes": probes, "delivery_error_ms_p50": percentile(errors, 0.50),
            "delivery_error_ms_p99": percentile(errors, 0.99), "delivery_error_ms_max": errors[-1],
            "delivery_error_ms_min": errors[0], "delivered_early_count": sum(1 for e in errors if e < 0),
            "burst_msgs": burst, "burst_throughput_msgs_per_s": round(burst * 1000 / burst_span_ms),
            "burst_log_mb_per_s": round(burst_log_bytes / MB / (burst_span_ms / 1000), 3),
            "burst_cpu_us_per_msg": us_per_msg(burst_cpu_s, burst),
            "burst_first_ack_late_ms": burst_acks[0] - burst_due, "burst_last_ack_late_ms": burst_acks[-1] - burst_due,
            "markers": stats.markers, "service_failures": stats.failures,
        }
    finally:
        await delay.close()
        await group.close()


def run(*, pending_counts: list[int], probes: int, probe_seconds: float, burst: int, seed: int,
        limits_budget_s: float, directory: str | None = None, progress=None) -> dict:
    """One case per pending count; returns the ``mqbench.bench-timer/1`` document."""
    base = Path(tempfile.mkdtemp(prefix="mqbench-bench-timer-", dir=directory))
    cases = []
    try:
        limits = measure_limits(base, limits_budget_s, disk=True, loopback=False)
        for n in pending_counts:
            case = asyncio.run(_case(base / f"p{n}", n, probes, probe_seconds, burst, seed))
            case["burst_log_ratio_to_disk_write"] = ratio(case["burst_log_mb_per_s"],
                                                          limits["disk_write_fdatasync_mb_per_s"])
            cases.append(case)
            shutil.rmtree(base / f"p{n}", ignore_errors=True)
            if progress:
                progress(case)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return bench_document("timer", seed=seed, cpu_cores=os.cpu_count(), limits=limits, cases=cases,
                          anchor_rocketmq_max_early_ms=ANCHOR_ROCKETMQ_MAX_EARLY_MS)


def render(doc: dict) -> str:
    """The terminal table of a ``mqbench.bench-timer/1`` document."""
    rows = [[r["pending_timers"], r["probes"], r["delivery_error_ms_p50"], r["delivery_error_ms_p99"],
             r["delivery_error_ms_max"], r["delivered_early_count"], r["burst_msgs"], r["burst_throughput_msgs_per_s"],
             r["burst_last_ack_late_ms"], r["burst_cpu_us_per_msg"], fmt_ratio(r["burst_log_ratio_to_disk_write"], 3),
             r["index_catch_up_s"]] for r in doc["cases"]]
    return "\n".join([
        limits_line(doc["limits"]),
        table(rows, ["pending", "probes", "err p50 ms", "err p99 ms", "err max ms", "early", "burst", "burst msgs/s",
                     "burst last late ms", "burst CPU µs/msg", "burst log MB/s / disk MB/s", "index catch-up s"]),
        f"RocketMQ 5 anchor: 1000 ms precision, up to {doc['anchor_rocketmq_max_early_ms']} ms early "
        "(rounded down on put)."])
