"""Topic routes as a client sees them, and the queue allocation RocketMQ consumers use. Pure code.

``TopicRoute.parse(body)`` reads a GET_ROUTEINFO_BY_TOPIC body, standard JSON or the Java name
server's older form with bare integer map keys (``"brokerAddrs":{0:"ip:port"}``), which a name
server before 4.9.4 sends. ``allocate_averagely`` is RocketMQ's ``AllocateMessageQueueAveragely``:
every consumer of a group computes the same split from the same sorted lists, so the queues are
shared without any coordination.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import NamedTuple

from mqbench.broker.formats import codes
from mqbench.errors import PeerError

MASTER_ID = 0
_BARE_INT_KEY = re.compile(r'([{,])\s*(-?\d+)\s*:')


class MessageQueue(NamedTuple):
    """(topic, broker name, queue id); sorts as Java's MessageQueue.compareTo."""

    topic: str
    broker_name: str
    queue_id: int


@dataclass
class BrokerInfo:
    cluster: str
    broker_name: str
    addrs: dict[int, str]

    @property
    def master_addr(self) -> str | None:
        return self.addrs.get(MASTER_ID)

    def read_addr(self) -> str | None:
        """The master, or the lowest-id replica when there is no master (reads only)."""
        if MASTER_ID in self.addrs:
            return self.addrs[MASTER_ID]
        return self.addrs[min(self.addrs)] if self.addrs else None


@dataclass
class QueueInfo:
    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int


@dataclass
class TopicRoute:
    topic: str
    queues: list[QueueInfo]
    brokers: dict[str, BrokerInfo]

    @classmethod
    def parse(cls, topic: str, body: bytes) -> "TopicRoute":
        """Parse a TopicRouteData body; PeerError naming the problem if it is not one."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PeerError(f"route of {topic!r} is not UTF-8: {exc}") from None
        try:
            doc = json.loads(text)
        except ValueError:
            try:
                doc = json.loads(_BARE_INT_KEY.sub(r'\1"\2":', text))
            except ValueError as exc:
                raise PeerError(f"route of {topic!r} is not JSON: {exc}") from None
        except RecursionError:
            raise PeerError(f"route of {topic!r} is nested too deeply") from None
        try:
            queues = [QueueInfo(str(q["brokerName"]), int(q["readQueueNums"]), int(q["writeQueueNums"]),
                                int(q["perm"])) for q in doc.get("queueDatas") or []]
            brokers = {}
            for b in doc.get("brokerDatas") or []:
                addrs = {int(k): str(v) for k, v in (b.get("brokerAddrs") or {}).items()}
                brokers[str(b["brokerName"])] = BrokerInfo(str(b.get("cluster", "")), str(b["brokerName"]), addrs)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise PeerError(f"route of {topic!r} is malformed: {type(exc).__name__} {exc}") from None
        return cls(topic, sorted(queues, key=lambda q: q.broker_name), brokers)

    def write_queues(self) -> list[MessageQueue]:
        """Queues a producer may send to: writable, on a broker name that has a master."""
        out = []
        for q in self.queues:
            broker = self.brokers.get(q.broker_name)
            if q.perm & codes.PERM_WRITE and broker is not None and broker.master_addr:
                out += [MessageQueue(self.topic, q.broker_name, i) for i in range(q.write_queue_nums)]
        return out

    def read_queues(self) -> list[MessageQueue]:
        """Queues a consumer pulls from: readable, on a broker name with at least one address."""
        out = []
        for q in self.queues:
            broker = self.brokers.get(q.broker_name)
            if q.perm & codes.PERM_READ and broker is not None and broker.addrs:
                out += [MessageQueue(self.topic, q.broker_name, i) for i in range(q.read_queue_nums)]
        return sorted(out)

    def master_addrs(self) -> list[str]:
        return sorted({b.master_addr for b in self.brokers.values() if b.master_addr})


def allocate_averagely(current_cid: str, mq_all: list[MessageQueue], cid_all: list[str]) -> list[MessageQueue]:
    """RocketMQ's average allocation: consecutive blocks, the first ``len(mq) % len(cid)`` consumers
    get one extra queue. Both lists are sorted here; a consumer not in ``cid_all`` gets nothing."""
    mqs, cids = sorted(mq_all), sorted(cid_all)
    if current_cid not in cids or not mqs:
        return []
    index, n_mq, n_cid = cids.index(current_cid), len(mqs), len(cids)
    mod = n_mq % n_cid
    if n_mq <= n_cid:
        average = 1
    elif mod > 0 and index < mod:
        average = n_mq // n_cid + 1
    else:
        average = n_mq // n_cid
    start = index * average if mod > 0 and index < mod else index * average + mod
    count = min(average, n_mq - start)
    return [mqs[(start + i) % n_mq] for i in range(max(count, 0))]
