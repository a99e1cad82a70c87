"""Run a ``DelayService`` exactly while a replicated group is leader: the broker's integration point.

For the broker process (``mqbench.broker.server.main.Broker``, after ``await broker.start()``)::

    delay = attach_to_broker(broker)             # rewrite on send + service on the leader

which is exactly the recipe below on the broker's extension points (``ctx.message_rewriters``,
``role_listeners``, ``commit_listeners``, ``stop_hooks``). For a bare ``ReplicatedGroup``:

    delay = LeaderDelay(group, config=DelayConfig(), clock_ms=clock_ms)
    # from the broker's own group callbacks:
    group.on_role_change = lambda role, term, leader: (..., delay.on_role_change(role, term, leader))
    group.on_commit = lambda: (..., delay.on_commit())
    delay.on_role_change(group.role, group.term, group.leader_id)   # the role it has now
    ...
    await delay.close()                                            # before group.close()

``on_role_change`` starts the service when the role becomes "leader" and stops it on any other
role, where an ``indexer`` (a ``DelayService`` in ``follow`` mode) keeps the timer index caught up
with the committed timer queue instead, so a new leader starts delivering without a long index
catch-up. The start/stop calls run one after the other in a task of their own (the callbacks are
synchronous), so a quick leader-follower-leader flap never runs two of them on one index.
``on_commit`` wakes whichever runs, when its queues grew (a delayed or timer record was applied). ``service`` is the delivering ``DelayService`` (its ``stats``
for runtime info), None while not leader.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from mqbench.broker.formats.record import Message
from mqbench.broker.store import versions

from .config import DelayConfig
from .rewrite import delay_level_fields, delay_rewrite_acts_on, rewrite_for_delay
from .service import DelayService

log = logging.getLogger("mqbench.broker.timer")


class LeaderDelay:
    """A DelayService that follows the group's leadership (see module doc)."""

    def __init__(self, group, *, config: DelayConfig = DelayConfig(), clock_ms: Callable[[], int] | None = None,
                 index_root=None, **service_kw):
        self.group = group
        self.config = config
        self.clock_ms = clock_ms
        self.index_root = index_root
        self.service_kw = service_kw
        self.service: DelayService | None = None       # delivering (leader)
        self.indexer: DelayService | None = None       # following: keeps the timer index caught up
        self._want_leader = False
        self._started = False
        self._changes: asyncio.Queue[bool] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._closed = False

    def on_role_change(self, role: str, term: int, leader_id) -> None:
        want = role == "leader"
        if self._closed or (want == self._want_leader and self._started):
            return
        self._started = True
        self._want_leader = want
        self._changes.put_nowait(want)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._follow(), name="delay-leadership")

    def on_commit(self) -> None:
        """Entries were committed: wake a service whose queues grew (``notify_if_grown``)."""
        for service in (self.service, self.indexer):
            if service is not None:
                service.notify_if_grown()

    def _new_service(self) -> DelayService:
        ensure = getattr(self.group, "ensure_topic", None)
        kw = {"ensure_topic": lambda name: ensure(name, queues=1)} if ensure is not None else {}
        kw.update(self.service_kw)
        kw.setdefault("woken_on_commit", True)      # on_commit is wired (module doc): no poll needed
        return DelayService(self.group.store, self.group.put, clock_ms=self.clock_ms, config=self.config,
                            index_root=self.index_root, name=f"delay-{getattr(self.group, 'self_id', '?')}", **kw)

    async def _follow(self) -> None:
        while not self._changes.empty():
            leader = self._changes.get_nowait()
            try:
                if self.indexer is not None and (leader or self._closed):
                    indexer, self.indexer = self.indexer, None
                    await indexer.stop()          # checkpoints the index the leader reopens at once
                if leader and self.service is None:
                    self.service = self._new_service()
                    await self.service.start()
                elif not leader and self.service is not None:
                    service, self.service = self.service, None
                    await service.stop()
                if not leader and not self._closed and self.indexer is None and self.config.timer_enabled:
                    self.indexer = self._new_service()
                    await self.indexer.follow()
            except Exception:
                log.exception("delay service could not follow the leadership change")

    def runtime_fields(self) -> dict[str, int]:
        """The delivering service's counters for runtime info (zeros while not leader)."""
        stats = self.service.stats if self.service is not None else None
        return {f"delay{name[0].upper()}{name[1:]}": getattr(stats, key, 0) if stats is not None else 0
                for name, key in (("delivered", "delivered"), ("deadLettered", "dead_lettered"),
                                  ("malformed", "malformed"), ("badMarkers", "bad_markers"),
                                  ("failures", "failures"))}

    async def close(self) -> None:
        """Stop the service (if running) and stop following the group."""
        self._closed = True
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)
        for name in ("service", "indexer"):
            service = getattr(self, name)
            if service is not None:
                setattr(self, name, None)
                await service.stop()


def attach_to_broker(broker, config: DelayConfig | None = None, **service_kw) -> LeaderDelay:
    """Wire delayed messages into a started ``Broker``: every single message sent is rewritten
    (``rewrite_for_delay``, a refused delay answers the producer with the error), and a
    ``DelayService`` runs while this replica leads. The timer store is on for v5 stores only
    (v4 stores keep RocketMQ 4.x's behaviour: TIMER_* properties are ignored)."""
    if config is None:
        config = DelayConfig(timer_enabled=versions.major(broker.version) >= 5)
    clock_ms = broker.group.store.clock_ms        # the clock that stamps the records
    delay = LeaderDelay(broker.group, config=config, clock_ms=clock_ms, **service_kw)
    def rewrite(msg: Message) -> Message:
        return rewrite_for_delay(msg, now_ms=clock_ms(), config=config)

    def fields(topic: str, queue_id: int, sysflag: int, properties: dict[str, str], wire: str):
        return delay_level_fields(topic, queue_id, sysflag, properties, wire, config)

    rewrite.acts_on = delay_rewrite_acts_on     # type: ignore[attr-defined]
    rewrite.fields = fields                     # type: ignore[attr-defined]
    broker.ctx.message_rewriters.append(rewrite)
    broker.role_listeners.append(delay.on_role_change)
    broker.commit_listeners.append(delay.on_commit)
    broker.stop_hooks.append(delay.close)
    broker.ctx.runtime_extras.append(delay.runtime_fields)
    delay.on_role_change(broker.group.role, broker.group.term, broker.group.leader_id)
    return delay
