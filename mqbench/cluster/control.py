"""Cluster control for callers inside an event loop: leaders, health, topics, offsets, kill, restart.

What drills, benchmarks, the DR drills and the rolling upgrade need from a running reference cluster
(``mqbench cluster up``), each answered through the launcher's status (STATUS of every instance)
and the remoting client, never by reading a broker's files:

* ``group_leader``/``current_leader``: who leads a group now (or as soon as one does);
* ``wait_healthy``: every replica answers, one leads and the name server routes to it;
* ``leaders_per_host``: the leader count per host (multi-instance layouts balance it);
* ``ensure_topic``: create a topic on a group's leader and wait until it is routed;
* ``committed_offsets``/``max_offsets``: a consumer group's committed offsets, the queues' ends;
* ``kill_instance``/``restart_after``: SIGKILL an instance, start it again after a delay.

``NETWORK_ERRORS`` are the exceptions a call to a cluster being broken may raise.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter

from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import RemotingCommand
from mqbench.cluster import launcher
from mqbench.cluster.processes import ClusterState
from mqbench.errors import InvariantViolation, MqbenchError, UserError

log = logging.getLogger(__name__)

NETWORK_ERRORS = (MqbenchError, OSError, asyncio.TimeoutError)
QUEUES = 4


# --- cluster helpers --------------------------------------------------------------------------------


async def group_leader(state: ClusterState, group: str, timeout_s: float = 1.0) -> launcher.InstanceStatus | None:
    """The live instance leading ``group`` now (highest term if two claim it), or None."""
    rows = [r for r in await launcher.status_async(state, timeout_s) if r.group == group and r.role == "leader"]
    return max(rows, key=lambda r: r.term or 0) if rows else None


async def current_leader(state: ClusterState, group: str, timeout_s: float) -> launcher.InstanceStatus:
    """The leader of ``group`` as soon as one answers (an election or transfer may be under way)."""
    deadline = time.monotonic() + timeout_s
    while (row := await group_leader(state, group)) is None:
        if time.monotonic() > deadline:
            raise UserError(f"group {group} has no leader after {timeout_s:.0f} s")
        await asyncio.sleep(0.05)
    return row


async def wait_healthy(state: ClusterState, group: str, timeout_s: float) -> launcher.InstanceStatus:
    """Wait until every replica of ``group`` runs and answers, one leads, and the name server routes
    to that leader; returns the leader. ``UserError`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last = "no status yet"
    while True:
        rows = [r for r in await launcher.status_async(state, 1.0) if r.group == group]
        leaders = [r for r in rows if r.role == "leader"]
        answering = all(r.role in ("leader", "follower") for r in rows)
        if len(leaders) == 1 and answering:
            routed = await launcher._namesrv_masters(launcher.cluster_layout(state).namesrv_addr, 1.0)
            if routed.get(group) == leaders[0].addr:
                return leaders[0]
            last = f"name server routes {group} to {routed.get(group) or 'nothing'}, leader is {leaders[0].addr}"
        else:
            last = ", ".join(f"{r.name}={r.role}" for r in rows)
        if time.monotonic() > deadline:
            raise UserError(f"group {group} not healthy after {timeout_s:.0f} s: {last}")
        await asyncio.sleep(0.2)


async def leaders_per_host(state: ClusterState) -> dict[str, int]:
    layout = launcher.cluster_layout(state)
    counts = Counter({host: 0 for host in layout.hosts})
    for row in await launcher.status_async(state, 1.0):
        if row.role == "leader":
            counts[row.host] += 1
    return dict(sorted(counts.items()))


async def ensure_topic(state: ClusterState, group: str, topic: str, timeout_s: float = 30.0,
                       queues: int = QUEUES, attributes: dict[str, str] | None = None) -> None:
    """Create ``topic`` (``queues`` queues, 4 by default; RocketMQ 5 topic ``attributes`` such as
    ``{"queue.type": "BatchCQ"}`` when given) on ``group``'s leader and wait until the name server
    routes it."""
    from mqbench.admin.calls import create_topic

    deadline = time.monotonic() + timeout_s
    created = False
    while True:
        if not created:
            row = await group_leader(state, group)
            if row is not None:
                try:
                    await create_topic(row.addr, topic, queues=queues, attributes=attributes,
                                       credentials=launcher.cluster_credentials(state))
                    created = True
                except NETWORK_ERRORS as exc:
                    log.info("create %s on %s: %s", topic, row.addr, exc)
        if created and await _routed(launcher.cluster_layout(state).namesrv_addr, topic):
            return
        if time.monotonic() > deadline:
            raise UserError(f"topic {topic} on {group}: {'not routed' if created else 'not created'} "
                            f"after {timeout_s:.0f} s")
        await asyncio.sleep(0.2)


async def _routed(namesrv_addr: str, topic: str) -> bool:
    try:
        channel = await connect(namesrv_addr, timeout_ms=1000)
    except NETWORK_ERRORS:
        return False
    try:
        response = await channel.request(RemotingCommand.request(
            codes.GET_ROUTEINFO_BY_TOPIC, {"topic": topic, "acceptStandardJsonOnly": True}), 1000)
        return response.code == codes.SUCCESS
    except NETWORK_ERRORS:
        return False
    finally:
        await channel.aclose()


async def committed_offsets(addr: str, group: str, topic: str, queues: int = QUEUES,
                            timeout_ms: int = 1000) -> dict[int, int]:
    """Queue id -> the consumer group's committed offset on the broker at ``addr`` (-1: none).

    Raises ``UserError`` when the broker refuses the query (anything but SUCCESS / QUERY_NOT_FOUND)."""
    channel = await connect(addr, timeout_ms=timeout_ms)
    try:
        out = {}
        for queue_id in range(queues):
            response = await channel.request(RemotingCommand.request(
                codes.QUERY_CONSUMER_OFFSET, headers.QueryConsumerOffsetHeader(group, topic, queue_id).to_ext()),
                timeout_ms)
            if response.code == codes.SUCCESS:
                out[queue_id] = headers.OffsetResponseHeader.from_ext(response.ext_fields).offset
            elif response.code == codes.QUERY_NOT_FOUND:
                out[queue_id] = -1
            else:
                raise UserError(f"QUERY_CONSUMER_OFFSET {topic}/{queue_id} on {addr}: "
                                f"{codes.response_name(response.code)} {response.remark or ''}")
        return out
    finally:
        await channel.aclose()


async def max_offsets(addr: str, topic: str, queues: int = QUEUES, timeout_ms: int = 1000, *,
                      credentials=None) -> dict[int, int]:
    """Queue id -> the queue's max offset (one past its last message) on the broker at ``addr``."""
    channel = await connect(addr, timeout_ms=timeout_ms, credentials=credentials)
    try:
        out = {}
        for queue_id in range(queues):
            response = await channel.request(RemotingCommand.request(
                codes.GET_MAX_OFFSET, headers.QueueOffsetHeader(topic, queue_id).to_ext()), timeout_ms)
            if response.code != codes.SUCCESS:
                raise UserError(f"GET_MAX_OFFSET {topic}/{queue_id} on {addr}: "
                                f"{codes.response_name(response.code)} {response.remark or ''}")
            out[queue_id] = headers.OffsetResponseHeader.from_ext(response.ext_fields).offset
        return out
    finally:
        await channel.aclose()


async def kill_instance(state: ClusterState, name: str) -> None:
    """SIGKILL the instance ``name`` (InvariantViolation if the signal hit anything else)."""
    hit = await asyncio.to_thread(launcher.kill, state, name, signal.SIGKILL)
    if hit != [name]:
        raise InvariantViolation(f"SIGKILL of {name} hit {hit}")


async def restart_after(state: ClusterState, name: str, delay_s: float) -> None:
    """Start the instance ``name`` again after ``delay_s``."""
    await asyncio.sleep(delay_s)
    await asyncio.to_thread(launcher.start, state, name)


