"""The rejoin drill: SIGKILL a group's leader under load, restart it later, watch for leader churn.

``await rejoin(state, group, down_s=30, after_s=20)`` keeps ``senders`` producers sending to a fresh
topic of ``group`` (each send waits for its acknowledgement, so the write rate is what the group
allows; ``batch`` messages a send), SIGKILLs the group's leader once writes flow, restarts it (``launcher.start``: same
store, same ports) ``down_s`` later, and goes on for ``after_s``. Meanwhile every replica's role and
term are polled every ``poll_s``. The result is a timeline: every term change seen (``elections``:
the first one is the failover the kill forces; any later one is churn), and the gaps between
consecutive acknowledgements (``longest_gap_ms`` over the whole drill, ``failover_gap_ms`` the one
spanning the kill, ``longest_gap_after_failover_ms`` every later one, the restart included).

A replica that rejoins must catch up without an election: pre-vote and the leader lease keep it
from disrupting the group, and leadership moves to it (the preferred leader) only by a transfer
once it is caught up, which is one more term change (``transfers``: a term change whose new leader
is the rejoined replica, after the restart). Clocks are ``time.monotonic``.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from mqbench.cluster import launcher
from mqbench.cluster.control import NETWORK_ERRORS, kill_instance, current_leader, ensure_topic, wait_healthy
from mqbench.cluster.processes import ClusterState


@dataclass
class TermChange:
    at_s: float              # seconds since the kill
    term: int
    leader: str | None       # the instance that led the new term when first seen (None: none yet)


@dataclass
class RejoinResult:
    victim: str
    down_s: float
    restart_at_s: float                       # seconds since the kill
    acked: int
    failed_sends: int
    term_changes: list[TermChange] = field(default_factory=list)
    failover_gap_ms: float | None = None      # the acknowledgement gap spanning the kill
    longest_gap_after_failover_ms: float = 0.0
    gaps_over_1s: list[tuple[float, float]] = field(default_factory=list)   # (at_s since kill, ms)

    def elections_after_first(self) -> list[TermChange]:
        """Term changes after the failover's, except the first one after the restart that the
        rejoined replica leads (leadership moving back to it: a transfer, not churn)."""
        later = list(self.term_changes[1:])
        for n, change in enumerate(later):
            if change.leader == self.victim and change.at_s >= self.restart_at_s:
                del later[n]
                break
        return later

    def timeline(self) -> list[str]:
        lines = [f"{0.0:8.2f}s SIGKILL {self.victim}"]
        events = [(c.at_s, f"term {c.term}, leader {c.leader or '?'}") for c in self.term_changes]
        events.append((self.restart_at_s, f"restart {self.victim}"))
        events += [(at, f"write gap {ms:.0f} ms ends") for at, ms in self.gaps_over_1s]
        lines += [f"{at:8.2f}s {text}" for at, text in sorted(events)]
        return lines


async def rejoin(state: ClusterState, group: str, *, down_s: float = 30.0, after_s: float = 20.0,
                 before_s: float = 3.0, senders: int = 4, batch: int = 1, body_bytes: int = 200,
                 poll_s: float = 0.1, load_after_restart: bool = True) -> RejoinResult:
    """Run the drill (module doc) and return its timeline. ``batch`` > 1: each send is a
    SEND_BATCH_MESSAGE of that many messages (one log entry each), for a larger backlog.
    ``load_after_restart=False`` stops sending when the victim restarts (the issue's idle case:
    the rejoining replica's catch-up is all the group does)."""
    from mqbench.client import OutgoingMessage, Producer

    topic = f"Rejoin{uuid.uuid4().hex[:8]}"
    layout = launcher.cluster_layout(state)
    await wait_healthy(state, group, 60)
    await ensure_topic(state, group, topic)
    producer = Producer(layout.namesrv_addr, f"PID_{topic}", send_timeout_ms=3000, retries=2)
    await producer.start()
    acks: list[float] = []
    failed = 0
    stop, stop_sending = asyncio.Event(), asyncio.Event()
    body = b"r" * body_bytes

    async def send_loop() -> None:
        nonlocal failed
        while not stop.is_set() and not stop_sending.is_set():
            try:
                if batch > 1:
                    await producer.send_batch([OutgoingMessage(topic, body) for _ in range(batch)])
                else:
                    await producer.send(OutgoingMessage(topic, body))
                acks.append(time.monotonic())
            except NETWORK_ERRORS:
                failed += 1
                await asyncio.sleep(0.05)

    terms: list[tuple[float, int, str | None]] = []

    async def watch() -> None:
        seen = 0
        while not stop.is_set():
            rows = [r for r in await launcher.status_async(state, 0.5) if r.group == group]
            top = max((r.term or 0 for r in rows), default=0)
            if top > seen:
                leaders = [r.name for r in rows if r.role == "leader" and r.term == top]
                terms.append((time.monotonic(), top, leaders[0] if leaders else None))
                seen = top
            elif terms and terms[-1][2] is None:
                leaders = [r.name for r in rows if r.role == "leader" and r.term == seen]
                if leaders:
                    at, term, _ = terms[-1]
                    terms[-1] = (at, term, leaders[0])
            await asyncio.sleep(poll_s)

    tasks = [asyncio.ensure_future(send_loop()) for _ in range(senders)]
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.sleep(before_s)
        victim = (await current_leader(state, group, 10)).name
        await kill_instance(state, victim)
        killed_at = time.monotonic()
        await asyncio.sleep(down_s)
        if not load_after_restart:
            stop_sending.set()
        await asyncio.to_thread(launcher.start, state, victim)
        restarted_at = time.monotonic()
        await asyncio.sleep(after_s)
    finally:
        stop.set()
        await asyncio.gather(*tasks, watcher, return_exceptions=True)
        await producer.close()
    result = RejoinResult(victim=victim, down_s=down_s, restart_at_s=round(restarted_at - killed_at, 2),
                          acked=len(acks), failed_sends=failed)
    first_term = next((t for at, t, _ in terms if at < killed_at), None)
    result.term_changes = [TermChange(round(at - killed_at, 2), t, who) for at, t, who in terms
                           if at >= killed_at and t != first_term]
    acks.sort()
    for prev, cur in zip(acks, acks[1:]):
        gap_ms = (cur - prev) * 1000
        if prev <= killed_at < cur:
            result.failover_gap_ms = round(gap_ms, 1)
        elif prev > killed_at:
            result.longest_gap_after_failover_ms = max(result.longest_gap_after_failover_ms, round(gap_ms, 1))
        if gap_ms > 1000:
            result.gaps_over_1s.append((round(cur - killed_at, 2), round(gap_ms, 1)))
    return result
