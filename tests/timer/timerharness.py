"""A stand-in for a replicated group over ONE real Store: a fake clock, the broker's send path
(``rewrite_for_delay`` then append) and a replicated ``put`` that can fail like a deposed leader.

Two ``DelayService`` instances over the same store with their own index folders are two replicas
taking turns as leader: the store holds exactly what the Raft log would (acknowledged puts), and a
put that fails after writing is a put committed by the quorum whose acknowledgement the old leader
never saw.
"""
from __future__ import annotations

import time
from pathlib import Path

from mqbench.broker.formats.record import Message
from mqbench.broker.store.store import Store
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE
from mqbench.broker.timer.rewrite import rewrite_for_delay
from mqbench.broker.timer.service import DelayService

T0_MS = 1_700_000_000_000


class Deposed(Exception):
    """What the replicated put raises once this replica is no longer the leader."""


class Group:
    def __init__(self, root: Path, *, version: str = "v5", start_ms: int = T0_MS):
        self.root = Path(root)
        self.version = version
        self.now_ms = start_ms
        self.store = self._open()

    def _open(self) -> Store:
        return Store.open(self.root / "store", self.version, create=True, clock_ms=self.clock_ms,
                          background_flush=False)

    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    def clock_ms(self) -> int:
        return self.now_ms

    def on_wall_clock(self) -> "Group":
        """Switch the group (its store included) to the wall clock, for the real asyncio loop."""
        def wall() -> int:
            return time.time_ns() // 1_000_000
        self.now_ms = wall()
        self.clock_ms = wall        # type: ignore[method-assign]
        self.store.clock_ms = wall
        return self

    def put_fn(self, *, fail_after: int | None = None, write_failing: bool = False):
        """A replicated put. After ``fail_after`` successful puts it raises ``Deposed``; with
        ``write_failing`` the failing put is written first (committed, never acknowledged)."""
        state = {"ok": 0}

        async def put(msg: Message):
            if fail_after is not None and state["ok"] >= fail_after:
                if write_failing and state.get("written") is None:
                    state["written"] = self.store.append(msg)
                raise Deposed("not the leader any more")
            state["ok"] += 1
            return self.store.append(msg)
        put.state = state
        return put

    def send(self, msg: Message, config: DelayConfig = DelayConfig()) -> Message:
        """The broker's send path: rewrite, then store. Returns the stored message."""
        stored = rewrite_for_delay(msg, now_ms=self.now_ms, config=config)
        self.store.append(stored)
        return stored

    def service(self, name: str, put=None, config: DelayConfig = DelayConfig(), **kw) -> DelayService:
        kw.setdefault("index_root", self.root / f"index-{name}")
        kw.setdefault("timer_log_segment_bytes", 52 * 400 + 30)
        return DelayService(self.store, put or self.put_fn(), clock_ms=self.clock_ms, config=config, name=name, **kw)

    def queue(self, topic: str, queue_id: int) -> list[Message]:
        out, offset = [], 0
        while True:
            res = self.store.read_queue(topic, queue_id, offset, 256)
            if not res.messages:
                return out
            out += res.messages
            offset = res.next_offset

    def deliveries(self, topics: dict[str, int]) -> list[Message]:
        """Every delivered message (those carrying a delivery source) in the given topics."""
        return [m for t, n in topics.items() for q in range(n) for m in self.queue(t, q) if PROPERTY_MQBENCH_DELAY_SOURCE in m.properties]


async def run_until(group: Group, service: DelayService, end_ms: int, tick_ms: int) -> None:
    """Step the service; when it has nothing more to do now, advance the fake clock by ``tick_ms``."""
    while group.now_ms < end_ms:
        if await service.step() > 0:
            group.now_ms += tick_ms
    while await service.step() == 0:
        pass
