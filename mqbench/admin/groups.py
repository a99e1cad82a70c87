"""Consumer groups of a cluster: their offsets and lag per queue, as mqadmin's ``consumerProgress``
asks for them (GET_CONSUME_STATS and GET_CONSUMER_CONNECTION_LIST on the brokers that route the
group's ``%RETRY%`` topic, or on every master when it has none).

* ``await group_offsets(session, group, topic=None) -> GroupOffsets``: one ``QueueOffsets`` per
  (topic, broker, queue) with ``max_offset`` (the broker's end of the queue), ``consumer_offset``
  (committed) and ``lag`` (their difference, the backlog), the group's consume rate (msgs/s over the
  last minute, summed over brokers) and its live consumers. AdminError when no broker has offsets
  or subscriptions for the group.
* ``await list_groups(session) -> list[GroupSummary]``: every group that has a ``%RETRY%`` topic,
  with its live consumers, total lag and consume rate (``consumerProgress`` without ``-g``); a
  group whose stats cannot be read shows ``error``.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mqbench.admin.calls import AdminError, AdminSession
from mqbench.admin.cluster import query_cluster_in
from mqbench.broker.formats.admin_bodies import QueueOffsets
from mqbench.broker.formats.topics import (
    RETRY_GROUP_TOPIC_PREFIX,
    retry_topic,
    validate_group,
    validate_topic,
)
from mqbench.errors import UserError


@dataclass
class GroupOffsets:
    group: str
    rows: list[QueueOffsets]
    consume_msgs_per_s: float
    consumers: list[dict] = field(default_factory=list)   # {"clientId", "clientAddr", "language", "version"}
    brokers: list[str] = field(default_factory=list)      # addresses asked

    @property
    def lag_total(self) -> int:
        return sum(r.lag for r in self.rows)

    def to_json(self) -> dict:
        return {"group": self.group, "lag_total_msgs": self.lag_total, "consume_msgs_per_s": self.consume_msgs_per_s,
                "consumers_online": len(self.consumers), "consumers": self.consumers, "brokers": self.brokers,
                "queues": [{"topic": r.topic, "broker_name": r.broker_name, "queue_id": r.queue_id,
                            "broker_offset": r.max_offset, "consumer_offset": r.consumer_offset, "lag_msgs": r.lag,
                            "last_consumed_store_epoch_ms": r.last_timestamp_ms or None} for r in self.rows]}


async def _group_brokers(session: AdminSession, group: str) -> list[str]:
    """Where the group lives: the brokers routing its retry topic (mqadmin's choice), else every master."""
    route = await session.route(retry_topic(group))
    if route is not None and route.brokers:
        addrs = [b.master_addr or b.read_addr() for b in route.brokers.values()]
    else:
        view = await query_cluster_in(session)
        addrs = [g.master.addr if g.master else g.replicas[0].addr for g in view.groups if g.replicas]
    return sorted({a for a in addrs if a})


async def group_offsets(session: AdminSession, group: str, topic: str | None = None) -> GroupOffsets:
    """The group's offsets and lag (module doc)."""
    validate_group(group)
    if topic is not None:
        validate_topic(topic)
    addrs = await _group_brokers(session, group)
    if not addrs:
        raise AdminError("the cluster has no broker to ask")
    stats = await asyncio.gather(*(session.consume_stats(a, group, topic) for a in addrs))
    rows = sorted((r for found, _tps in stats for r in found), key=lambda r: (r.topic, r.broker_name, r.queue_id))
    if not rows:
        where = f" on topic {topic}" if topic else ""
        raise AdminError(f"group {group} has no offsets and no subscriptions{where} on {', '.join(addrs)}: "
                         "it never consumed there (or the name is wrong)")
    consumers: dict[str, dict] = {}
    for addr in addrs:
        found = await session.consumer_connections(addr, group)
        for conn in (found or {}).get("connections", []):
            consumers.setdefault(conn["clientId"], conn)
    return GroupOffsets(group, rows, round(sum(tps for _rows, tps in stats), 3),
                        [consumers[k] for k in sorted(consumers)], addrs)


@dataclass
class GroupSummary:
    group: str
    consumers_online: int = 0
    lag_total_msgs: int | None = None
    consume_msgs_per_s: float | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return {"group": self.group, "consumers_online": self.consumers_online, "lag_total_msgs": self.lag_total_msgs,
                "consume_msgs_per_s": self.consume_msgs_per_s, "error": self.error}


async def list_groups(session: AdminSession) -> list[GroupSummary]:
    """Every consumer group with a retry topic (module doc), sorted by name."""
    groups = sorted(t[len(RETRY_GROUP_TOPIC_PREFIX):] for t in await session.topic_list()
                    if t.startswith(RETRY_GROUP_TOPIC_PREFIX))
    out = []
    for group in groups:
        try:
            found = await group_offsets(session, group)
        except UserError as exc:   # AdminError, or a retry topic whose group name is not valid
            out.append(GroupSummary(group, error=str(exc)))
            continue
        out.append(GroupSummary(group, len(found.consumers), found.lag_total, found.consume_msgs_per_s))
    return out
