"""A real one-replica broker (name server, Raft group of one, remoting) in this event loop, with the
delay service (timer store) and the POP service attached as the broker process attaches them."""
from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path

from mqbench.admin.calls import create_topic
from mqbench.broker.layout import parse_layout
from mqbench.broker.namesrv.server import NameServer
from mqbench.broker.pop.service import attach_to_broker as attach_pop
from mqbench.broker.remoting.client import connect
from mqbench.broker.server.main import Broker
from mqbench.broker.timer import DelayConfig
from mqbench.broker.timer.wiring import attach_to_broker as attach_delay

FAST = {"tick_ms": 20, "heartbeat_ms": 60, "election_ms": 500}
ADDRESS = "127.0.79.1"


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
    raise RuntimeError("no free ports")


class PopBroker:
    def __init__(self, root: Path):
        base = free_base()
        self.layout = parse_layout({"name": "pop1", "cluster": "popcluster", "namesrv_host": "h0",
                                    "namesrv_port": base + 5, "broker_port": base, "rooms": {"r1": {"hosts": ["h0"]}},
                                    "hosts": {"h0": {"address": ADDRESS}}, "groups": {"broker-p": {"replicas": ["h0"]}}})
        self.root = root
        self.namesrv = NameServer()

    async def __aenter__(self) -> "PopBroker":
        await self.namesrv.start(self.layout.hosts["h0"], self.layout.namesrv_port)
        self.broker = await Broker(self.layout, self.layout.instances[0].name, self.root / "store",
                                   register_interval_ms=300, rng=random.Random(1), group_options=FAST).start()
        self.delay = attach_delay(self.broker, DelayConfig(poll_interval_ms=50))
        self.pop = attach_pop(self.broker)
        deadline = time.monotonic() + 10
        while not (self.broker.group.leader_ready and self.delay.service is not None
                   and self.delay.service.state == "running"):
            if time.monotonic() > deadline:
                raise RuntimeError("the broker did not lead with its delay service running")
            await asyncio.sleep(0.02)
        self.addr = self.broker.instance.addr
        self.channel = await connect(self.addr)
        return self

    async def topic(self, name: str, queues: int = 2) -> None:
        await create_topic(self.addr, name, queues=queues)
        deadline = time.monotonic() + 10
        while name not in self.namesrv.routes.topic_queues:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} never routed")
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc) -> None:
        self.channel.close()
        await self.broker.close()
        await self.namesrv.close()
