"""Traffic for the rolling-upgrade benchmark (``mqbench bench migrate --rolling``) and its test:
numbered messages sent and consumed while an upgrade runs, with the acknowledgement time of each,
so lost messages and write gaps show."""
from __future__ import annotations

import asyncio
import time
import uuid

from mqbench.cluster import launcher
from mqbench.cluster.control import NETWORK_ERRORS, committed_offsets, ensure_topic, wait_healthy


async def traffic_during(state, group_name: str, upgrade, *, senders: int = 4) -> dict:
    """Send numbered messages and consume them while ``upgrade()`` runs; then drain."""
    from mqbench.client import Consumer, OutgoingMessage, Producer

    run = uuid.uuid4().hex[:8]
    topic, group = f"Roll{run}", f"GID_roll{run}"
    namesrv = launcher.cluster_layout(state).namesrv_addr
    await wait_healthy(state, group_name, 60)
    await ensure_topic(state, group_name, topic)
    producer = Producer(namesrv, f"PID_roll{run}", send_timeout_ms=3000, retries=2)
    consumer = Consumer(namesrv, group, consume_from="first", pull_error_backoff_ms=100,
                        commit_interval_ms=300, rebalance_interval_ms=1000)
    consumer.subscribe(topic)
    await producer.start()
    await consumer.start()
    acked: dict[int, float] = {}
    consumed: set[int] = set()
    failures = 0
    stop = asyncio.Event()
    counter = iter(range(10**9))

    async def send_loop() -> None:
        nonlocal failures
        while not stop.is_set():
            seq = next(counter)
            body = f"roll {run} {seq:010d}".encode()
            while True:
                try:
                    await producer.send(OutgoingMessage(topic, body, keys=[f"{run}-{seq}"]))
                    acked[seq] = time.monotonic()
                    break
                except NETWORK_ERRORS:
                    failures += 1
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.005)

    async def consume_loop() -> None:
        while True:
            for msg in await consumer.receive(256, timeout_ms=300):
                parts = msg.body.split(b" ")
                if len(parts) == 3 and parts[1] == run.encode():
                    consumed.add(int(parts[2]))

    consuming = asyncio.create_task(consume_loop())
    sending = [asyncio.create_task(send_loop()) for _ in range(senders)]
    try:
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        steps = await upgrade()
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*sending)
        deadline = time.monotonic() + 60
        while not set(acked) <= consumed and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + 20      # the consumer commits every 300 ms
        while True:
            leader = await wait_healthy(state, group_name, 60)
            offsets = await committed_offsets(leader.addr, group, topic)
            if sum(max(o, 0) for o in offsets.values()) >= len(acked) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        consuming.cancel()
        for task in sending:
            task.cancel()
        await asyncio.gather(consuming, *sending, return_exceptions=True)
        await consumer.close()
        await producer.close()
    return {"acked": acked, "consumed": consumed, "failures": failures, "steps": steps, "t0": t0,
            "offsets": offsets}


def gap_ms(acked: dict[int, float], start: float, end: float) -> float:
    """The longest time without an acknowledged send in [start, end] (write unavailability)."""
    times = sorted(t for t in acked.values() if start - 5 <= t <= end + 5)
    inside = [start] + [t for t in times if start <= t <= end] + [next((t for t in times if t > end), end)]
    return max(b - a for a, b in zip(inside, inside[1:])) * 1000


def replica_windows(steps, t0: float, after_last_s: float = 3.0) -> list[tuple[float, float]]:
    """Each upgraded replica's window: from its stop to the next replica's stop (the last one: to
    ``after_last_s`` after it caught up, so a leadership move back to a preferred leader counts)."""
    live = [s for s in steps if not s.skipped]
    out = []
    for i, s in enumerate(live):
        end = live[i + 1].stopped_at_s if i + 1 < len(live) else s.caught_up_at_s + after_last_s
        out.append((t0 + s.stopped_at_s, t0 + end))
    return out

