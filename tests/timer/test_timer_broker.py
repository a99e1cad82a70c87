"""The real broker (name server, one-replica broker group, remoting) in one event loop with the
delay features wired in by ``attach_to_broker``: a producer's delay-level and timer sends reach the
consumer at or after their time, never before; the official C++ client's delay-level sends too."""
from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import time
from pathlib import Path

import pytest

from mqbench.broker.layout import parse_layout
from mqbench.broker.namesrv.server import NameServer
from mqbench.admin.calls import create_topic
from mqbench.broker.server.main import Broker
from mqbench.broker.timer import DelayConfig
from mqbench.broker.timer.wiring import attach_to_broker
from mqbench.client import Consumer, OutgoingMessage, Producer
from mqbench.errors import UserError

FAST = {"tick_ms": 20, "heartbeat_ms": 60, "election_ms": 500}
ADDRESS = "127.0.78.1"


def free_base() -> int:
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, 60000, 10)
        ok = True
        for port in (base, base + 1, base + 5):
            with socket.socket() as s:
                try:
                    s.bind((ADDRESS, port))
                except OSError:
                    ok = False
        if ok:
            return base
    raise AssertionError("no free ports")


class OneBroker:
    def __init__(self, root: Path, config: DelayConfig | None = None):
        base = free_base()
        self.layout = parse_layout({"name": "timer1", "cluster": "timercluster", "namesrv_host": "h0",
                                    "namesrv_port": base + 5, "broker_port": base, "rooms": {"r1": {"hosts": ["h0"]}},
                                    "hosts": {"h0": {"address": ADDRESS}}, "groups": {"broker-t": {"replicas": ["h0"]}}})
        self.root = root
        self.config = config
        self.namesrv = NameServer()

    async def __aenter__(self) -> "OneBroker":
        await self.namesrv.start(self.layout.hosts["h0"], self.layout.namesrv_port)
        self.broker = await Broker(self.layout, self.layout.instances[0].name, self.root / "store",
                                   register_interval_ms=300, rng=random.Random(1), group_options=FAST).start()
        self.delay = attach_to_broker(self.broker, self.config)
        deadline = time.monotonic() + 10
        while not (self.broker.group.leader_ready and self.delay.service is not None
                   and self.delay.service.state == "running"):
            assert time.monotonic() < deadline, "the broker did not lead with its delay service running"
            await asyncio.sleep(0.02)
        return self

    async def topic(self, name: str) -> None:
        """Create ``name`` and wait until the name server routes it."""
        await create_topic(self.broker.instance.addr, name, queues=2)
        deadline = time.monotonic() + 10
        while name not in self.namesrv.routes.topic_queues:
            assert time.monotonic() < deadline, f"{name} never routed"
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc) -> None:
        await self.broker.close()
        await self.namesrv.close()


async def collect(consumer: Consumer, want: int, timeout_s: float) -> list:
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += await consumer.receive(64, timeout_ms=200)
    return got


def test_producer_delay_level_and_timer_sends_arrive_on_time(tmp_path):
    async def main():
        async with OneBroker(tmp_path, DelayConfig(delay_levels="1s 2s", poll_interval_ms=50)) as one:
            addr = one.layout.namesrv_addr
            await one.topic("Delayed")
            consumer = Consumer(addr, "GID_timer", consume_from="first")
            consumer.subscribe("Delayed")
            async with Producer(addr, "PID_timer") as producer, consumer:
                sent = {}
                for i in range(6):
                    kind = ("level", "delay_ms", "deliver_at")[i % 3]
                    now = time.time_ns() // 1_000_000
                    msg = OutgoingMessage("Delayed", b"x%d" % i, keys=[f"k{i}"],
                                          delay_level=1 if kind == "level" else 0,
                                          delay_ms=700 if kind == "delay_ms" else None,
                                          deliver_at_ms=now + 900 if kind == "deliver_at" else None)
                    sent[f"k{i}"] = (now, {"level": 1000, "delay_ms": 700, "deliver_at": 900}[kind])
                    await producer.send(msg)
                early = await consumer.receive(64, timeout_ms=300)
                assert early == [], "delivered before its time"
                got = await collect(consumer, 6, 10)
                received_ms = time.time_ns() // 1_000_000
                assert sorted(m.keys[0] for m in got) == sorted(sent)
                for m in got:
                    sent_ms, delay_ms = sent[m.keys[0]]
                    assert m.store_timestamp_ms >= sent_ms + delay_ms, (m.keys, m.store_timestamp_ms - sent_ms)
                    assert m.store_timestamp_ms <= received_ms
                # a timer beyond the maximum is refused to the producer, by name
                with pytest.raises(UserError, match="maximum"):
                    await producer.send(OutgoingMessage("Delayed", b"far", delay_ms=4 * 86_400_000))
            stats = one.delay.service.stats
            assert stats.delivered == 6 and stats.markers >= 1
    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.realproc
def test_official_cpp_client_delay_level_sends(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "official"))
    import clients  # installs the official C++ client under .cache/ (or skips on other platforms)
    argv = clients.ensure_cpp_client()

    async def main():
        async with OneBroker(tmp_path, DelayConfig(delay_levels="1s 2s", poll_interval_ms=50)) as one:
            addr = one.layout.namesrv_addr
            await one.topic("CppDelayed")
            started = time.time_ns() // 1_000_000
            proc = await asyncio.create_subprocess_exec(
                *argv, "produce", "--namesrv", addr, "--topic", "CppDelayed", "--count", "5", "--prefix", "cpp",
                "--delay-level", "2", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 90)
            assert proc.returncode == 0, err.decode()[-2000:]
            sends = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
            assert [s["status"] for s in sends] == ["OK"] * 5
            consumer = Consumer(addr, "GID_cpp_delayed", consume_from="first")
            consumer.subscribe("CppDelayed")
            async with consumer:
                got = await collect(consumer, 5, 15)
            assert sorted(m.keys[0] for m in got) == [f"cpp-{i}" for i in range(5)]
            for m in got:
                assert m.store_timestamp_ms >= m.born_timestamp_ms + 2000      # level 2 = 2 s here
                assert m.properties.get("seq") is not None and m.tags.startswith("tag")
            assert min(m.store_timestamp_ms for m in got) >= started + 2000
    asyncio.run(asyncio.wait_for(main(), 150))
