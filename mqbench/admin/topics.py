"""Topics of a cluster: list them with their queues per broker group, create and update them on
every master, as mqadmin's ``topicList`` / ``topicRoute`` / ``updateTopic`` do (name server
GET_ALL_TOPIC_LIST_FROM_NAMESERVER and GET_ROUTEINFO_BY_TOPIC; UPDATE_AND_CREATE_TOPIC on each
broker group's master).

* ``await list_topics(session, include_internal=False) -> list[TopicInfo]``: every topic with its
  ``kind`` (``normal``, ``retry`` for ``%RETRY%group``, ``dlq``, ``system`` for TBW102,
  SCHEDULE_TOPIC_XXXX, rmq_sys_*, RMQ_SYS_*, the cluster's and the brokers' own names...) and per
  broker group its read/write queues and perm; internal kinds only with ``include_internal``.
* ``await change_topic(session, topic, *, create, queues, ...) -> TopicChange``: ``create=True``
  refuses a topic that already has a route (use update), ``create=False`` refuses one that has
  none (use create); it is written on the master of every broker group (or of ``brokers``, or of
  the groups of ``cluster``) and then waited for in the name server's route for up to
  ``route_wait_s`` (a real broker registers the change at once too).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from mqbench.admin.calls import AdminError, AdminSession, create_topic
from mqbench.admin.cluster import ClusterView, query_cluster_in
from mqbench.broker.formats.topics import (
    DLQ_GROUP_TOPIC_PREFIX,
    RETRY_GROUP_TOPIC_PREFIX,
    is_system_topic,
    validate_topic,
)
from mqbench.errors import UserError

ROUTE_CONCURRENCY = 16
ROUTE_WAIT_S_DEFAULT = 10.0


@dataclass
class TopicQueues:
    broker_name: str
    read_queues: int
    write_queues: int
    perm: int


@dataclass
class TopicInfo:
    name: str
    kind: str
    queues: list[TopicQueues] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"topic": self.name, "kind": self.kind,
                "brokers": [{"broker_name": q.broker_name, "read_queues": q.read_queues,
                             "write_queues": q.write_queues, "perm": q.perm} for q in self.queues]}


def topic_kind(name: str, cluster_names: set[str]) -> str:
    if name.startswith(RETRY_GROUP_TOPIC_PREFIX):
        return "retry"
    if name.startswith(DLQ_GROUP_TOPIC_PREFIX):
        return "dlq"
    # a broker registers its cluster's and its own name as topics, plus *_REPLY_TOPIC
    if is_system_topic(name) or name in cluster_names or name.endswith("_REPLY_TOPIC") or name.startswith("RMQ_SYS_"):
        return "system"
    return "normal"


async def _routes(session: AdminSession, names: list[str]) -> dict[str, object]:
    gate = asyncio.Semaphore(ROUTE_CONCURRENCY)

    async def one(name: str):
        async with gate:
            return name, await session.route(name)

    return dict(await asyncio.gather(*(one(n) for n in names)))


async def list_topics(session: AdminSession, include_internal: bool = False,
                      view: ClusterView | None = None) -> list[TopicInfo]:
    """Every topic of the cluster (module doc), sorted by name."""
    view = view or await query_cluster_in(session)
    special = set(view.clusters) | {g.broker_name for g in view.groups}
    names = [n for n in await session.topic_list() if include_internal or topic_kind(n, special) == "normal"]
    routes = await _routes(session, names)
    out = []
    for name in sorted(names):
        route = routes.get(name)
        queues = [TopicQueues(q.broker_name, q.read_queue_nums, q.write_queue_nums, q.perm)
                  for q in (route.queues if route is not None else [])]
        out.append(TopicInfo(name, topic_kind(name, special), queues))
    return out


@dataclass
class TopicChange:
    topic: str
    action: str                   # "created" or "updated"
    brokers: list[str]            # broker names written
    routed: bool                  # the name server routes it to every one of them
    queues: int = 0
    read_queues: int = 0
    perm: int = 6
    attributes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"topic": self.topic, "action": self.action, "brokers": self.brokers, "routed": self.routed,
                "write_queues": self.queues, "read_queues": self.read_queues, "perm": self.perm,
                "attributes": self.attributes}


def _targets(view: ClusterView, brokers: list[str] | None, cluster: str | None) -> dict[str, str]:
    masters = view.master_addrs()
    if cluster is not None:
        if cluster not in view.clusters:
            raise UserError(f"no cluster {cluster!r}; the name server knows {', '.join(view.clusters) or 'none'}")
        masters = {g.broker_name: masters[g.broker_name] for g in view.groups
                   if g.cluster == cluster and g.broker_name in masters}
    if brokers:
        unknown = sorted(set(brokers) - {g.broker_name for g in view.groups})
        if unknown:
            raise UserError(f"no broker group {', '.join(unknown)}; the cluster has "
                            f"{', '.join(g.broker_name for g in view.groups) or 'none'}")
        leaderless = sorted(set(brokers) - set(masters))
        if leaderless:
            raise AdminError(f"broker group {', '.join(leaderless)} has no master (leader) right now")
        masters = {b: masters[b] for b in brokers}
    if not masters:
        raise AdminError("no broker group has a master (leader) to write the topic to")
    return masters


async def change_topic(session: AdminSession, topic: str, *, create: bool, queues: int, read_queues: int | None = None,
                       perm: int = 6, attributes: dict[str, str] | None = None, brokers: list[str] | None = None,
                       cluster: str | None = None, route_wait_s: float = ROUTE_WAIT_S_DEFAULT,
                       timeout_s: float = 10.0) -> TopicChange:
    """Create or update ``topic`` (module doc)."""
    validate_topic(topic)
    view = await query_cluster_in(session)
    targets = _targets(view, brokers, cluster)
    route = await session.route(topic)
    exists = route is not None and bool(route.queues)
    if create and exists:
        raise UserError(f"topic {topic} already exists (on {', '.join(q.broker_name for q in route.queues)}); "
                        "use `mqbench admin topic update` to change it")
    if not create and not exists:
        raise UserError(f"topic {topic} does not exist; use `mqbench admin topic create` first")
    for broker_name, addr in sorted(targets.items()):
        try:
            await create_topic(addr, topic, queues=queues, read_queues=read_queues, perm=perm, attributes=attributes,
                               timeout_s=timeout_s, credentials=session.credentials)
        except OSError as exc:
            raise AdminError(f"{'create' if create else 'update'} topic {topic}: master of {broker_name} "
                             f"({addr}) did not answer ({exc})") from None
    read = queues if read_queues is None else read_queues
    deadline = time.monotonic() + route_wait_s
    routed = False
    while True:
        route = await session.route(topic)
        got = {q.broker_name: q for q in (route.queues if route is not None else [])}
        routed = all(b in got and got[b].write_queue_nums == queues and got[b].read_queue_nums == read
                     and got[b].perm == perm for b in targets)
        if routed or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    return TopicChange(topic, "created" if create else "updated", sorted(targets), routed, queues, read, perm,
                       dict(attributes or {}))
