"""Timer (arbitrary delay) benchmark: delivery precision and expiry-burst throughput (a script).

    .venv/bin/python tests/benchmarks/timer_bench.py [--pending 10000,1000000] [--probes 2000]
        [--probe-seconds 10] [--burst 20000] [--dir DIR] [--seed 1] [--json]

For each ``--pending`` count, on one fresh one-replica Raft group (``ReplicatedGroup``, durability
``memory``; every re-put goes through Raft like a client put) with the ``DelayService`` wired as the
broker wires it (``LeaderDelay``: started as leader, woken on commit):

1. ``pending`` timers are put (batches of 1000, the broker's rewrite applied), due 1 hour to 3 days
   ahead so they stay pending; the service indexes them (the catch-up time is reported).
2. ``--probes`` timers are put one by one, due spread evenly over ``--probe-seconds`` starting 3 s
   later. For each, the signed delivery error = the time its re-put was acknowledged (committed and
   applied) - its requested TIMER_DELIVER_MS. Negative = early. Percentiles are over messages.
3. ``--burst`` timers due at the same millisecond (put beforehand in batches): burst throughput =
   burst / (last acknowledged re-put - due time), and the last one's lateness.

Time is the wall clock (ms). Anchor: RocketMQ 5 rounds a timer down to its 1000 ms precision and
so delivers up to 1 s early (bench-anchors section 4.2); ours must show 0 early.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mqbench.broker.server.replicated import ReplicatedGroup
from mqbench.broker.store.batch import BatchItem
from mqbench.broker.store.record import Message
from mqbench.broker.store.timer_formats import TIMER_TOPIC
from mqbench.broker.timer import DelayConfig, rewrite_for_delay
from mqbench.broker.timer.wiring import LeaderDelay
from mqbench.output import document, print_json, table

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def timer_item(topic: str, deliver_ms: int, body: bytes, now_ms: int, config: DelayConfig) -> BatchItem:
    stored = rewrite_for_delay(Message(topic, body, {"TIMER_DELIVER_MS": str(deliver_ms)}), now_ms=now_ms,
                               config=config)
    return BatchItem(body, properties=stored.properties)


async def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timer bench: timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def run_case(root: Path, pending: int, probes: int, probe_seconds: float, burst: int, seed: int) -> dict:
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
        await wait_until(lambda: group.leader_ready, 10, "leadership")
        delay.on_role_change(group.role, group.term, group.leader_id)
        # 1. pending timers
        t = time.perf_counter()
        for start in range(0, pending, 1000):
            now = wall_ms()
            items = [timer_item("Bench", now + HOUR_MS + rng.randrange(3 * DAY_MS - HOUR_MS), b"p%d" % i, now, config)
                     for i in range(start, min(pending, start + 1000))]
            await group.put_batch(TIMER_TOPIC, 0, items, consolidate=False)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        await wait_until(lambda: delay.service is not None and delay.service.index is not None
                         and delay.service.index.next_queue_offset >= pending, 1200, "the index catch-up")
        index_s = time.perf_counter() - t
        # 2. probes, one put each
        requested: dict[bytes, int] = {}
        first_due = wall_ms() + 3000
        for i in range(probes):
            at = first_due + int(i * probe_seconds * 1000 / max(1, probes))
            body = b"probe%d" % i
            result = await group.put(rewrite_for_delay(Message("Probe", body, {"TIMER_DELIVER_MS": str(at)}),
                                                       now_ms=wall_ms(), config=config))
            requested[f"T:{result.queue_offset}".encode()] = at
        await wait_until(lambda: all(k.decode() in acks for k in requested), probe_seconds + 60, "the probes")
        errors = sorted(acks[k.decode()][1] - at for k, at in requested.items())
        # 3. a burst due at one millisecond
        burst_due = wall_ms() + 3000 + burst // 4      # room to store the burst on a busy machine
        before = set(acks)
        for start in range(0, burst, 1000):
            now = wall_ms()
            items = [timer_item("Burst", burst_due, b"b%d" % i, now, config)
                     for i in range(start, min(burst, start + 1000))]
            await group.put_batch(TIMER_TOPIC, 0, items, consolidate=False)
        if wall_ms() >= burst_due:
            raise SystemExit("timer bench: the burst was not stored before it was due; use a smaller --burst")
        await wait_until(lambda: len(acks) - len(before) >= burst, 600, "the burst")
        burst_acks = sorted(a for s, (_, a) in acks.items() if s not in before)
        burst_span_ms = max(1, burst_acks[-1] - burst_due)
        stats = delay.service.stats
        return {
            "pending_timers": pending, "pending_load_s": round(load_s, 2), "index_catch_up_s": round(index_s, 2),
            "probes": probes, "delivery_error_ms_p50": percentile(errors, 0.50),
            "delivery_error_ms_p99": percentile(errors, 0.99), "delivery_error_ms_max": errors[-1],
            "delivery_error_ms_min": errors[0], "delivered_early_count": sum(1 for e in errors if e < 0),
            "burst_messages": burst, "burst_throughput_msgs_per_s": round(burst * 1000 / burst_span_ms),
            "burst_first_ack_late_ms": burst_acks[0] - burst_due, "burst_last_ack_late_ms": burst_acks[-1] - burst_due,
            "markers": stats.markers, "service_failures": stats.failures,
        }
    finally:
        await delay.close()
        await group.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pending", default="10000,1000000", help="pending timer counts, comma separated")
    ap.add_argument("--probes", type=int, default=2000)
    ap.add_argument("--probe-seconds", type=float, default=10.0)
    ap.add_argument("--burst", type=int, default=20000)
    ap.add_argument("--dir", default=None, help="where to write (default: the system temp folder)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        counts = [int(x) for x in args.pending.split(",") if x]
    except ValueError:
        raise SystemExit(f"--pending: {args.pending!r} is not a list of integers") from None
    if not counts or min(counts) < 0 or args.probes < 1 or args.burst < 1:
        raise SystemExit("--pending, --probes and --burst must be positive")
    base = Path(tempfile.mkdtemp(prefix="timer-bench-", dir=args.dir))
    rows = []
    try:
        for n in counts:
            rows.append(asyncio.run(run_case(base / f"p{n}", n, args.probes, args.probe_seconds, args.burst, args.seed)))
            shutil.rmtree(base / f"p{n}", ignore_errors=True)
            if not args.json:
                print(f"done: {n} pending", file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print_json(document("mqbench.timer-bench/1", cpu_count=os.cpu_count(), cases=rows,
                            anchor_rocketmq_max_early_ms=1000))
        return
    print(table([[r["pending_timers"], r["probes"], r["delivery_error_ms_p50"], r["delivery_error_ms_p99"],
                  r["delivery_error_ms_max"], r["delivered_early_count"], r["burst_messages"],
                  r["burst_throughput_msgs_per_s"], r["burst_last_ack_late_ms"], r["index_catch_up_s"]]
                 for r in rows],
                ["pending", "probes", "err p50 ms", "err p99 ms", "err max ms", "early", "burst",
                 "burst msgs/s", "burst last late ms", "index catch-up s"]))
    print("RocketMQ 5 anchor: 1000 ms precision, up to 1000 ms early (rounded down on put).")


if __name__ == "__main__":
    main()
