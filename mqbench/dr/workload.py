"""The drill's traffic: a paced producer of numbered messages with realistic bodies, a consumer
group that counts deliveries, and a read-back of everything a cluster serves.

Bodies are ``dr <run> <seq> `` followed by a body of the chosen model (``workloads.bodies``:
orders, notifications, iot), so every delivered or stored message names its sequence number.
Every send is attempted once (the client's own retries included): an acknowledged sequence number
is one the cluster promised to keep; a send that failed is not counted anywhere.
All times are ``time.monotonic`` ms (drills measure a real system; nothing here is replayed).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from dataclasses import dataclass, field

from mqbench.client import ClientError, Consumer, OutgoingMessage, Producer
from mqbench.errors import MqbenchError, UserError
from mqbench.workloads.bodies import generate_bodies

log = logging.getLogger(__name__)

BODY_MODELS = ("orders", "notifications", "iot")
NETWORK_ERRORS = (MqbenchError, OSError, asyncio.TimeoutError)


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def body_for(run_id: str, seq: int, payload: bytes) -> bytes:
    return f"dr {run_id} {seq} ".encode() + payload


def seq_of(run_id: str, body: bytes) -> int | None:
    parts = body.split(b" ", 3)
    if len(parts) < 4 or parts[0] != b"dr" or parts[1] != run_id.encode() or not parts[2].isdigit():
        return None
    return int(parts[2])


@dataclass
class SendRecord:
    seq: int
    started_ms: int
    acked_ms: int | None  # None: not acknowledged (failed, or still in flight)
    phase: str
    failed_ms: int | None = None  # when the send gave up


@dataclass
class Traffic:
    """What the producer and the consumer saw."""

    run_id: str
    sends: list[SendRecord] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)  # sequence numbers, in delivery order
    phase: str = "baseline"

    def acked(self) -> set[int]:
        return {s.seq for s in self.sends if s.acked_ms is not None}

    def ack_times_ms(self) -> list[int]:
        return sorted(s.acked_ms for s in self.sends if s.acked_ms is not None)

    def latencies_ms(self, phase: str) -> list[int]:
        return [s.acked_ms - s.started_ms for s in self.sends if s.phase == phase and s.acked_ms is not None]


class Workload:
    """Paced sends (``rate_per_s``, ``concurrency`` senders) to ``topic`` on ``namesrv``; the
    producer can be pointed at another cluster with ``switch`` (scheme C's failover)."""

    def __init__(self, namesrv: str, topic: str, *, model: str = "orders", rate_per_s: int = 100,
                 concurrency: int = 4, seed: int = 0, run_id: str, send_timeout_ms: int = 1000):
        if model not in BODY_MODELS:
            raise UserError(f"workload {model!r} is not one of {', '.join(BODY_MODELS)}")
        if not 1 <= rate_per_s <= 5000:
            raise UserError(f"rate must be 1..5000 messages per second, not {rate_per_s}")
        self.topic, self.rate_per_s, self.concurrency = topic, rate_per_s, concurrency
        self.send_timeout_ms = send_timeout_ms
        self.traffic = Traffic(run_id)
        self._payloads = generate_bodies(model, 256, random.Random(seed))
        self._seq = itertools.count()
        self._producer = self._new_producer(namesrv)
        self._tasks: list[asyncio.Task] = []
        self._ack = asyncio.Event()
        self._stopping = False  # loops check it too: a cancel can be swallowed by wait_for in 3.11

    def _new_producer(self, namesrv: str) -> Producer:
        return Producer(namesrv, "PID_dr", send_timeout_ms=self.send_timeout_ms, retries=2, route_ttl_ms=1000)

    async def start(self) -> None:
        await self._producer.start()
        self._tasks = [asyncio.create_task(self._sender(i), name=f"dr-send-{i}") for i in range(self.concurrency)]

    async def _sender(self, index: int) -> None:
        interval_ms = 1000 * self.concurrency / self.rate_per_s
        next_ms = now_ms() + index * interval_ms / self.concurrency
        while not self._stopping:
            await asyncio.sleep(max(0.0, (next_ms - now_ms()) / 1000))
            next_ms = max(next_ms + interval_ms, now_ms() - interval_ms)  # no catch-up storm after a stall
            await self.send_one()

    async def send_one(self) -> SendRecord:
        seq = next(self._seq)
        body = body_for(self.traffic.run_id, seq, self._payloads[seq % len(self._payloads)])
        record = SendRecord(seq, now_ms(), None, self.traffic.phase)
        self.traffic.sends.append(record)
        try:
            await self._producer.send(OutgoingMessage(self.topic, body))
            record.acked_ms = now_ms()
            self._ack.set()
        except NETWORK_ERRORS as exc:
            record.failed_ms = now_ms()
            log.info("dr send %d failed: %s", seq, exc)
        return record

    async def burst(self, count: int) -> list[SendRecord]:
        """``count`` sends at once; returns when all are answered."""
        return list(await asyncio.gather(*(self.send_one() for _ in range(count))))

    async def switch(self, namesrv: str) -> None:
        """Send to another cluster from now on (the old producer is closed in the background)."""
        old, self._producer = self._producer, self._new_producer(namesrv)
        await self._producer.start()
        asyncio.create_task(_quietly(old.close()))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await _quietly(self._producer.close())


class Deliveries:
    """A consumer group that records every delivered sequence number (duplicates included)."""

    def __init__(self, namesrv: str, topic: str, traffic: Traffic, group: str = "GID_dr"):
        self.topic, self.traffic, self.group = topic, traffic, group
        self._consumer = self._new(namesrv)
        self._task: asyncio.Task | None = None
        self._stopping = False

    def _new(self, namesrv: str) -> Consumer:
        consumer = Consumer(namesrv, self.group, consume_from="first", suspend_timeout_ms=1000,
                            pull_error_backoff_ms=200, rebalance_interval_ms=2000, commit_interval_ms=200,
                            route_ttl_ms=1000)
        consumer.subscribe(self.topic)
        return consumer

    async def start(self) -> None:
        self._stopping = False
        await self._consumer.start()
        self._task = asyncio.create_task(self._loop(), name="dr-consume")

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                for message in await self._consumer.receive(64, timeout_ms=200):
                    seq = seq_of(self.traffic.run_id, message.body)
                    if seq is not None:
                        self.traffic.delivered.append(seq)
            except ClientError as exc:
                log.info("dr consume: %s", exc)
                await asyncio.sleep(0.2)

    async def switch(self, namesrv: str) -> None:
        """Consume the same group from another cluster (its offsets as the replicator left them)."""
        await self.stop()
        self._consumer = self._new(namesrv)
        await self.start()

    async def wait_for(self, wanted: set[int], timeout_s: float, idle_s: float = 2.0) -> None:
        """Until every ``wanted`` number was delivered, nothing new came for ``idle_s``, or ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        seen, idle_until = len(self.traffic.delivered), time.monotonic() + idle_s
        while not wanted <= set(self.traffic.delivered) and time.monotonic() < min(deadline, idle_until):
            await asyncio.sleep(0.1)
            if len(self.traffic.delivered) != seen:
                seen, idle_until = len(self.traffic.delivered), time.monotonic() + idle_s

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await _quietly(self._consumer.close())


async def read_back(namesrv: str, topic: str, run_id: str, wanted: set[int], *, idle_s: float = 3.0,
                    timeout_s: float = 30.0) -> set[int]:
    """Every sequence number the cluster serves on ``topic`` (a fresh group from the first offset),
    reading until all of ``wanted`` came or nothing new came for ``idle_s``."""
    consumer = Consumer(namesrv, f"GID_dr_check_{run_id}", consume_from="first", suspend_timeout_ms=500,
                        pull_error_backoff_ms=200)
    consumer.subscribe(topic)
    present: set[int] = set()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        idle_until = time.monotonic() + idle_s
        while time.monotonic() < min(deadline, idle_until) and not wanted <= present:
            got = await consumer.receive(256, timeout_ms=200)
            if got:
                idle_until = time.monotonic() + idle_s
            present.update(s for s in (seq_of(run_id, m.body) for m in got) if s is not None)
    finally:
        await _quietly(consumer.close())
    return present


async def _quietly(coro) -> None:
    try:
        await asyncio.wait_for(coro, 5)
    except (*NETWORK_ERRORS, Exception) as exc:  # noqa: BLE001 - closing a client of a dead cluster
        log.info("dr: closing a client: %s", exc)
