"""Scheme C's cross-room copy: the replicator in room2 and its link to room1.

``LinkedReplicator(active_layout, source_addrs, target_namesrv, topics, groups, link, seed)``:
one ``DelayProxy`` per room1 address the replicator dials (the name server and every broker of
``source_addrs``), each listening on its own alias ``127.220.(n // 256).(n % 256)`` (``n`` the
address's index, from 1) and forwarding through ``link``, and a ``Replicator`` whose every
connection to room1 goes through them (``source_dial``). So cutting the link is a partition of the
replicator from room1, wherever the object runs: on the drill's machine (``mqbench dr`` locally),
or inside a host actor on a standby node (``ThreadedReplicator``, scheme C on Ray nodes), where
the aliases are that node's loopback and the cut is on the machine the copy traffic leaves from.

Async methods (one event loop): ``start``, ``close``, ``lag_total`` (acknowledged messages in
room1 not copied yet, asked of room1's brokers directly, not through the link), ``cut``, ``heal``,
``bytes`` (both directions, every proxy), ``copied``; and the plain ``set_transparent`` (local
drills only: the no-rooms baseline).
``ThreadedReplicator`` runs one on an event loop of its own thread, with blocking methods of the
same names, for a caller without a loop (a Ray actor).
"""
from __future__ import annotations

import asyncio
import threading

from mqbench.dr.netem import NO_DELAY, DelayProxy, LinkSettings
from mqbench.dr.replicator import Replicator

CONTROL_TIMEOUT_S = 30.0
ALIAS_PREFIX = "127.220"


class LinkedReplicator:
    """The replicator and its proxies to room1 (module doc)."""

    def __init__(self, source_namesrv: str, source_addrs: list[str], target_namesrv: str, topics: list[str],
                 groups: list[str], link: LinkSettings, seed: int | str = 0):
        self.source_namesrv, self.source_addrs, self.target_namesrv = source_namesrv, list(source_addrs), target_namesrv
        self.topics, self.groups, self.link, self.seed = list(topics), list(groups), link, seed
        self.proxies: dict[str, DelayProxy] = {}
        self.replicator: Replicator | None = None

    async def start(self) -> "LinkedReplicator":
        for n, addr in enumerate([self.source_namesrv, *self.source_addrs], start=1):
            if addr in self.proxies:
                continue
            host, port = addr.rsplit(":", 1)
            listen = (f"{ALIAS_PREFIX}.{n // 256}.{n % 256}", int(port))
            proxy = DelayProxy(listen, (host, int(port)), forward=self.link, backward=self.link,
                               seed=f"{self.seed}/c/{n}", name=f"room2->{addr}")
            await proxy.start()
            self.proxies[addr] = proxy
        self.replicator = Replicator(self.dial(self.source_namesrv), self.target_namesrv, self.topics, self.groups,
                                     suspend_timeout_ms=1000, offset_sync_interval_ms=500, source_dial=self.dial)
        await self.replicator.start()
        return self

    def dial(self, addr: str) -> str:
        proxy = self.proxies.get(addr)
        return f"{proxy.listen[0]}:{proxy.listen[1]}" if proxy is not None else addr

    def set_transparent(self, on: bool) -> None:
        for proxy in self.proxies.values():
            proxy.set_links(forward=NO_DELAY if on else self.link, backward=NO_DELAY if on else self.link)

    async def cut(self) -> None:
        for proxy in self.proxies.values():
            proxy.cut()

    async def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    async def bytes(self) -> int:
        return sum(p.stats().bytes_forward + p.stats().bytes_backward for p in self.proxies.values())

    async def copied(self) -> int:
        return 0 if self.replicator is None else self.replicator.stats.copied

    async def lag_total(self) -> int:
        return 0 if self.replicator is None else sum((await self.replicator.lag(direct=True)).values())

    async def close(self) -> None:
        if self.replicator is not None:
            await self.replicator.close()
        await asyncio.gather(*(p.close() for p in self.proxies.values()), return_exceptions=True)


class ThreadedReplicator:
    """A ``LinkedReplicator`` on its own thread's event loop, with blocking methods (module doc)."""

    def __init__(self, *args, **kwargs):
        self.inner = LinkedReplicator(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dr-replicator", daemon=True)
        self._thread.start()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    def start(self) -> None:
        try:
            self._run(self.inner.start())
        except BaseException:
            self.close()
            raise

    def cut(self) -> None:
        self._run(self.inner.cut())

    def heal(self) -> None:
        self._run(self.inner.heal())

    def bytes(self) -> int:
        return self._run(self.inner.bytes())

    def copied(self) -> int:
        return self._run(self.inner.copied())

    def lag_total(self) -> int:
        return self._run(self.inner.lag_total())

    def close(self) -> None:
        if not self._loop.is_running():
            return
        try:
            self._run(self.inner.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONTROL_TIMEOUT_S)
            if not self._thread.is_alive():
                self._loop.close()
