"""Failover drills on a running reference cluster: the kill-the-leader soak and failover timing.

The house of ``mqbench bench failover`` (``measure_failovers``) and the soak tests (``soak``); the
cluster control they drive (leaders, health, topics, offsets, kill, restart) is
``mqbench.cluster.control``.

Both run in the caller's asyncio loop, drive the cluster with mqbench's own client
(``mqbench.client``) and SIGKILL real broker processes through the launcher.

``soak(state, group, messages=...)`` produces ``messages`` numbered messages to a fresh topic of
``group`` while one consumer group consumes them, and SIGKILLs the group's leader ``kills`` times
(at evenly spaced points of the production progress, each victim restarted ``restart_after_s``
later). A send that fails is sent again until it is acknowledged, so every number is eventually
acknowledged (duplicates are allowed: at-least-once). Between kills the committed consumer offsets
are read from the group's leader (QUERY_CONSUMER_OFFSET) twice a second. The result lists what
must be empty on a correct broker: acknowledged numbers never consumed (``lost``), bodies that
were never sent (``unexpected``), committed offsets that went backwards (``offset_rewinds``). It
also reports ``final_lag``, the committed offsets' distance from the queues' ends once the consumer
closed (0 when its last, confirmed commit reached the current leader; see the soak tests for the
client defect that makes it non-zero after a leadership move). Production is gated just past each
kill point until that kill is done, so every kill lands while sends are running.

``measure_failovers(state, kills=20)`` keeps a few senders busy on one topic per group and, ``kills``
times (round-robin over the groups), SIGKILLs a group's leader and measures the failover time:
from the signal to the acknowledgement of the first send to that group's topic that *started
after the process was seen gone* (``failover_ms``: only a live broker can have answered it, so an
answer the old leader wrote just before dying never counts), and to the first status poll that
shows another leader (``election_ms``, an upper bound: status is polled). The soak reports
``failover_ms`` the same way. Before each kill every group is whole again (every replica answers,
the name server routes to the leader) and led from its preferred host, so a leadership transfer
cannot move the leader between choosing the victim and killing it. Leaders per host are counted
before the first kill, after each failover (before the victim restarts: ``leaders_per_host``) and
after the last restart; ``rebalance_ms`` is how long after the victim's restart every preferred
leader leads its group again (None: not within ``rebalance_wait_s``).

Clocks are ``time.monotonic`` (these drills measure a real system; nothing here is replayed).
"""
from __future__ import annotations

import asyncio
import logging
import statistics
import time
import uuid
from dataclasses import dataclass

from mqbench.cluster import launcher
from mqbench.cluster.control import (NETWORK_ERRORS, committed_offsets, current_leader, ensure_topic, group_leader,
                                     kill_instance, leaders_per_host, max_offsets, restart_after, wait_healthy)
from mqbench.cluster.processes import ClusterState
from mqbench.errors import UserError

log = logging.getLogger(__name__)



@dataclass
class KillEvent:
    instance: str
    host: str
    group: str
    term_before: int | None
    at_s: float                        # SIGKILL sent, seconds since the drill started
    dead_at_s: float | None = None     # the process was seen gone
    failover_ms: float | None = None   # SIGKILL -> first ack of a send started after the death (None: none)
    election_ms: float | None = None   # signal -> a status poll showing another leader
    leaders_per_host: dict[str, int] | None = None  # once another leader was seen, before the restart
    rebalance_ms: float | None = None  # victim restarted -> every preferred leader leading again


@dataclass
class SoakResult:
    messages: int
    acked: int                 # distinct numbers acknowledged
    consumed: int              # distinct numbers consumed
    lost: list[int]            # acknowledged, never consumed: must be empty
    unexpected: list[str]      # consumed bodies no producer sent: must be empty
    duplicates: int            # deliveries beyond the first (at-least-once redeliveries)
    send_failures: int         # failed send calls, each sent again
    offset_readings: int
    offset_rewinds: list[str]  # committed offsets that went backwards: must be empty
    final_lag: int             # sum over queues of max offset - committed offset after the consumer closed
    kills: list[KillEvent]
    duration_s: float


@dataclass
class FailoverResult:
    layout: str
    samples: list[KillEvent]
    leaders_per_host_before: dict[str, int]
    leaders_per_host_after: dict[str, int]
    acked_sends: int

    def stats(self, attr: str = "failover_ms") -> dict[str, float | int | None]:
        values = [getattr(s, attr) for s in self.samples if getattr(s, attr) is not None]
        return {"count": len(values), "failed": len(self.samples) - len(values),
                "median": statistics.median(values) if values else None, "max": max(values) if values else None,
                "min": min(values) if values else None}


# --- the soak: traffic (the events), kills (the faults), offset and final checks (the checkers) ----------


class _Tally:
    """What the soak's producer and consumer saw."""

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.acked: set[int] = set()
        self.consumed: set[int] = set()
        self.unexpected: list[str] = []
        self.duplicates = 0
        self.send_failures = 0
        self.ack_times: list[tuple[float, float]] = []  # (send started, acknowledged)
        self.all_consumed = asyncio.Event()
        self.progress = asyncio.Condition()


def _body(run_id: str, seq: int, size_bytes: int) -> bytes:
    head = f"soak {run_id} {seq:010d} ".encode()
    return head + b"x" * max(0, size_bytes - len(head))


def _seq_of(run_id: str, body: bytes) -> int | None:
    parts = body.split(b" ", 3)
    if len(parts) < 3 or parts[0] != b"soak" or parts[1] != run_id.encode() or not parts[2].isdigit():
        return None
    return int(parts[2])


class _SoakTraffic:
    """The soak's load: numbered messages sent (failed batches sent again before any new number) and
    consumed. Numbers are handed out only up to ``gate``, just past the next kill point, so each kill
    happens while production still runs, however fast it is (the kills open the gate)."""

    def __init__(self, run_id: str, topic: str, tally: _Tally, *, messages: int, kills: int, batch: int,
                 body_bytes: int, producer, consumer, deadline: float):
        self.run_id, self.topic, self.tally = run_id, topic, tally
        self.messages, self.batch, self.body_bytes = messages, batch, body_bytes
        self.producer, self.consumer, self.deadline = producer, consumer, deadline
        self.retry: list[list[int]] = []
        self.next_fresh = 0
        self.margin = max(batch, messages // (2 * (kills + 1)))
        self.gate = messages if kills == 0 else messages // (kills + 1) + self.margin
        self.abort = asyncio.Event()

    async def _next_batch(self) -> list[int] | None:
        tally = self.tally
        if not self.retry:
            async with tally.progress:
                await tally.progress.wait_for(lambda: self.next_fresh < self.gate or self.next_fresh >= self.messages
                                              or self.abort.is_set())
        if self.retry:
            return self.retry.pop(0)
        if self.abort.is_set() or self.next_fresh >= self.messages:
            return None
        seqs = list(range(self.next_fresh, min(self.next_fresh + self.batch, self.messages)))
        self.next_fresh = seqs[-1] + 1
        return seqs

    async def send_loop(self) -> None:
        from mqbench.client import OutgoingMessage
        tally = self.tally
        while time.monotonic() < self.deadline:
            seqs = await self._next_batch()
            if seqs is None:
                return
            msgs = [OutgoingMessage(self.topic, _body(self.run_id, s, self.body_bytes), keys=[f"{self.run_id}-{s}"])
                    for s in seqs]
            sent_at = time.monotonic()
            try:
                if len(msgs) == 1:
                    await self.producer.send(msgs[0])
                else:
                    await self.producer.send_batch(msgs)
            except NETWORK_ERRORS as exc:
                tally.send_failures += 1
                log.info("send of %d..%d failed, sending again: %s", seqs[0], seqs[-1], exc)
                self.retry.append(seqs)
                await asyncio.sleep(0.05)
                continue
            tally.acked.update(seqs)
            tally.ack_times.append((sent_at, time.monotonic()))
            async with tally.progress:
                tally.progress.notify_all()

    async def consume_loop(self) -> None:
        tally = self.tally
        while True:
            for msg in await self.consumer.receive(512, timeout_ms=500):
                seq = _seq_of(self.run_id, msg.body)
                if seq is None or not 0 <= seq < self.messages:
                    tally.unexpected.append(msg.body[:40].decode(errors="replace"))
                elif seq in tally.consumed:
                    tally.duplicates += 1
                else:
                    tally.consumed.add(seq)
            if len(tally.consumed) == self.messages:
                tally.all_consumed.set()

    async def open_gate(self, gate: int) -> None:
        self.gate = gate
        async with self.tally.progress:
            self.tally.progress.notify_all()

    async def stop(self) -> None:
        """Production ended (done or timed out): a kill still waiting for progress is skipped."""
        self.abort.set()
        async with self.tally.progress:
            self.tally.progress.notify_all()


class _OffsetWatch:
    """A checker: the committed consumer offsets, read from the group's leader, never go back."""

    def __init__(self, state: ClusterState, group: str, consumer_group: str, topic: str):
        self.state, self.group, self.consumer_group, self.topic = state, group, consumer_group, topic
        self.readings = 0
        self.high: dict[int, int] = {}
        self.rewinds: list[str] = []

    async def read(self, label: str) -> None:
        row = await group_leader(self.state, self.group)
        if row is None:
            return
        try:
            offsets = await committed_offsets(row.addr, self.consumer_group, self.topic)
        except NETWORK_ERRORS as exc:
            log.info("offsets from %s: %s", row.addr, exc)
            return
        self.readings += 1
        for queue_id, offset in offsets.items():
            if offset < self.high.get(queue_id, -1):
                self.rewinds.append(f"{self.topic}/{queue_id}: {offset} from {row.name} (term {row.term}, {label}) "
                                    f"after {self.high[queue_id]} was read earlier")
            self.high[queue_id] = max(self.high.get(queue_id, -1), offset)

    async def loop(self) -> None:
        while True:
            await self.read("periodic")
            await asyncio.sleep(0.5)


async def _kill_leaders(state: ClusterState, group: str, traffic: _SoakTraffic, watch: _OffsetWatch, *, kills: int,
                        messages: int, started: float, restart_after_s: float, heal_timeout_s: float,
                        events: list[KillEvent]) -> None:
    """The faults: SIGKILL the group's leader at evenly spaced points of the acknowledged progress,
    restart it ``restart_after_s`` later, wait for the group to heal; offsets read around each kill."""
    tally = traffic.tally
    try:
        for k in range(kills):
            target = (k + 1) * messages // (kills + 1)
            async with tally.progress:
                # awaited within this iteration, so the lambda sees this iteration's target
                await tally.progress.wait_for(lambda: len(tally.acked) >= target or traffic.abort.is_set())  # noqa: B023
            if traffic.abort.is_set():
                return
            await wait_healthy(state, group, heal_timeout_s)
            await watch.read(f"before kill {k + 1}")
            leader = await current_leader(state, group, heal_timeout_s)  # asked again just before the kill
            event = KillEvent(leader.name, leader.host, group, leader.term, time.monotonic() - started)
            await kill_instance(state, leader.name)
            event.dead_at_s = time.monotonic() - started
            events.append(event)
            await traffic.open_gate(messages if k + 1 == kills else (k + 2) * messages // (kills + 1) + traffic.margin)
            await restart_after(state, leader.name, restart_after_s)
            await wait_healthy(state, group, heal_timeout_s)
            await watch.read(f"after kill {k + 1}")
    except BaseException:
        traffic.abort.set()  # the senders stop; the failure is raised by ``await killer``
        raise


async def soak(state: ClusterState, group: str, *, messages: int = 10_000, kills: int = 2, batch: int = 1,
               senders: int = 8, body_bytes: int = 100, restart_after_s: float = 1.0,
               drain_timeout_s: float = 120.0, heal_timeout_s: float = 60.0,
               produce_timeout_s: float = 600.0) -> SoakResult:
    """Run the soak described in the module docstring and return what it saw (see ``SoakResult``).

    ``batch`` > 1 sends numbers in SEND_BATCH_MESSAGE batches of that size. Raises ``UserError``
    when the group does not heal after a kill within ``heal_timeout_s`` or the messages are not
    all acknowledged within ``produce_timeout_s``; ``lost``/``offset_rewinds`` are reported, not
    raised, so a test can show them.
    """
    from mqbench.client import Consumer, Producer

    run_id = uuid.uuid4().hex[:8]
    topic, consumer_group = f"Soak{run_id}", f"GID_soak{run_id}"
    namesrv = launcher.cluster_layout(state).namesrv_addr
    await wait_healthy(state, group, heal_timeout_s)
    await ensure_topic(state, group, topic)
    tally = _Tally(messages)
    started = time.monotonic()
    producer = Producer(namesrv, f"PID_soak{run_id}", send_timeout_ms=3000, retries=2)
    consumer = Consumer(namesrv, consumer_group, consume_from="first", pull_error_backoff_ms=200,
                        commit_interval_ms=500, rebalance_interval_ms=2000)
    consumer.subscribe(topic)
    await producer.start()
    await consumer.start()
    traffic = _SoakTraffic(run_id, topic, tally, messages=messages, kills=kills, batch=batch, body_bytes=body_bytes,
                           producer=producer, consumer=consumer, deadline=started + produce_timeout_s)
    watch = _OffsetWatch(state, group, consumer_group, topic)
    events: list[KillEvent] = []

    consuming = asyncio.create_task(traffic.consume_loop(), name="soak-consume")
    tasks = [consuming, asyncio.create_task(watch.loop(), name="soak-offsets")]
    killer = asyncio.create_task(_kill_leaders(state, group, traffic, watch, kills=kills, messages=messages,
                                               started=started, restart_after_s=restart_after_s,
                                               heal_timeout_s=heal_timeout_s, events=events), name="soak-kill")
    try:
        await asyncio.gather(*(traffic.send_loop() for _ in range(senders)))
        await traffic.stop()
        await killer
        drained = asyncio.create_task(tally.all_consumed.wait())
        await asyncio.wait([drained, consuming], timeout=drain_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        if consuming.done() and consuming.exception() is not None:
            raise UserError(f"the soak's consumer failed: {consuming.exception()}")
        await watch.read("end")
    finally:
        for task in [*tasks, killer]:
            task.cancel()
        await asyncio.gather(*tasks, killer, return_exceptions=True)
        await consumer.close()
        await producer.close()
    return await _soak_result(state, group, consumer_group, topic, tally, watch, events, started, heal_timeout_s)


async def _soak_result(state: ClusterState, group: str, consumer_group: str, topic: str, tally: _Tally,
                       watch: _OffsetWatch, events: list[KillEvent], started: float,
                       heal_timeout_s: float) -> SoakResult:
    """The final checks: every acknowledged number consumed, the lag once the consumer closed, and
    each kill's failover time (the first ack of a send started after the victim was seen gone)."""
    leader = await wait_healthy(state, group, heal_timeout_s)
    committed = await committed_offsets(leader.addr, consumer_group, topic)
    final_lag = sum(top - max(committed[q], 0) for q, top in (await max_offsets(leader.addr, topic)).items())
    for event in events:
        after = [acked for sent, acked in tally.ack_times if sent > started + event.dead_at_s]
        event.failover_ms = (min(after) - started - event.at_s) * 1000 if after else None
    messages = tally.messages
    if len(tally.acked) != messages:
        raise UserError(f"only {len(tally.acked)} of {messages} messages were acknowledged")
    return SoakResult(messages=messages, acked=len(tally.acked), consumed=len(tally.consumed),
                      lost=sorted(tally.acked - tally.consumed), unexpected=tally.unexpected,
                      duplicates=tally.duplicates, send_failures=tally.send_failures, offset_readings=watch.readings,
                      offset_rewinds=watch.rewinds, final_lag=final_lag, kills=events,
                      duration_s=time.monotonic() - started)


# --- failover timing ------------------------------------------------------------------------------------


async def measure_failovers(state: ClusterState, *, kills: int = 20, senders_per_group: int = 4,
                            settle_s: float = 1.0, failover_timeout_s: float = 60.0, heal_timeout_s: float = 60.0,
                            rebalance_wait_s: float = 30.0, on_sample=None) -> FailoverResult:
    """Kill leaders ``kills`` times and time each failover (see the module docstring).

    ``on_sample(event)`` is called after each kill (progress output). A failover that sees no
    acknowledged send within ``failover_timeout_s`` is recorded with ``failover_ms=None``.
    """
    from mqbench.client import OutgoingMessage, Producer

    layout = launcher.cluster_layout(state)
    groups = list(layout.groups)
    run_id = uuid.uuid4().hex[:8]
    topics = {g: f"Failover{run_id}{g.replace('-', '')}" for g in groups}
    for g in groups:
        await wait_healthy(state, g, heal_timeout_s)
        await ensure_topic(state, g, topics[g])
    before = await _balanced_leaders(state, rebalance_wait_s)
    ack_times: dict[str, list[tuple[float, float]]] = {g: [] for g in groups}  # (send started, acked)
    acked = asyncio.Event()
    producer = Producer(layout.namesrv_addr, f"PID_failover{run_id}", send_timeout_ms=2000, retries=2)
    await producer.start()
    count = 0

    async def send_loop(g: str) -> None:
        nonlocal count
        while True:
            sent_at = time.monotonic()
            try:
                await producer.send(OutgoingMessage(topics[g], b"failover probe"))
            except NETWORK_ERRORS:
                await asyncio.sleep(0.02)
                continue
            ack_times[g].append((sent_at, time.monotonic()))
            count += 1
            acked.set()

    async def next_ack(g: str, after: float, timeout_s: float) -> float | None:
        """When the first send to ``g`` started after ``after`` was acknowledged (None: timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [acked for sent, acked in ack_times[g] if sent > after]
            if found:
                return min(found)
            acked.clear()
            try:
                await asyncio.wait_for(acked.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        return None

    async def new_leader_seen(g: str, victim: str, t0: float, timeout_s: float) -> float | None:
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            row = await group_leader(state, g, timeout_s=0.5)
            if row is not None and row.name != victim:
                return time.monotonic()
            await asyncio.sleep(0.05)
        return None

    samples: list[KillEvent] = []
    tasks = [asyncio.create_task(send_loop(g), name=f"failover-send-{g}")
             for g in groups for _ in range(senders_per_group)]
    started = time.monotonic()
    try:
        for k in range(kills):
            g = groups[k % len(groups)]
            # Steady state first: every group whole and led from its preferred host, so that a
            # leadership transfer back to a restarted preferred replica cannot move the leader
            # between picking the victim and killing it.
            for other in groups:
                await wait_healthy(state, other, heal_timeout_s)
            await _balanced_leaders(state, rebalance_wait_s)
            await asyncio.sleep(settle_s)
            if await next_ack(g, time.monotonic(), failover_timeout_s) is None:
                raise UserError(f"no send to {g} was acknowledged for {failover_timeout_s:.0f} s before a kill")
            victim = await current_leader(state, g, heal_timeout_s)
            event = KillEvent(victim.name, victim.host, g, victim.term, time.monotonic() - started)
            t0 = time.monotonic()
            election = asyncio.create_task(new_leader_seen(g, victim.name, t0, failover_timeout_s))
            await kill_instance(state, victim.name)
            t_dead = time.monotonic()
            event.dead_at_s = t_dead - started
            t_ack = await next_ack(g, t_dead, failover_timeout_s)
            t_elected = await election
            event.failover_ms = (t_ack - t0) * 1000 if t_ack is not None else None
            event.election_ms = (t_elected - t0) * 1000 if t_elected is not None else None
            event.leaders_per_host = await leaders_per_host(state)
            t_restart = time.monotonic()
            await restart_after(state, victim.name, 0.0)
            if await _balanced(state, rebalance_wait_s):
                event.rebalance_ms = (time.monotonic() - t_restart) * 1000
            samples.append(event)
            if on_sample is not None:
                on_sample(event)
        for other in groups:
            await wait_healthy(state, other, heal_timeout_s)
        after = await _balanced_leaders(state, rebalance_wait_s)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.close()
    return FailoverResult(layout=layout.name, samples=samples, leaders_per_host_before=before,
                          leaders_per_host_after=after, acked_sends=count)


async def _balanced(state: ClusterState, wait_s: float) -> bool:
    """Wait up to ``wait_s`` until every group with a preferred leader is led from its preferred
    host (polled every 50 ms); whether that happened."""
    layout = launcher.cluster_layout(state)
    wanted = {i.group: i.host for i in layout.instances if i.preferred_leader}
    deadline = time.monotonic() + wait_s
    while True:
        rows = await launcher.status_async(state, 1.0)
        led = {r.group: r.host for r in rows if r.role == "leader"}
        if all(led.get(g) == h for g, h in wanted.items()):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def _balanced_leaders(state: ClusterState, wait_s: float) -> dict[str, int]:
    """Leaders per host once every group with a preferred leader is led from its preferred host,
    or as they are after ``wait_s``."""
    await _balanced(state, wait_s)
    return await leaders_per_host(state)
