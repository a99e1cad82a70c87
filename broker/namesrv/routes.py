"""The name server's route table: broker registrations in, TopicRouteData and ClusterInfo out. Sans-I/O.

What it keeps (RocketMQ ``RouteInfoManager``): per broker name a BrokerData (cluster, name,
``brokerAddrs`` {brokerId: "ip:port"}, id 0 = the master / Raft leader), per topic the QueueData of
each broker name that serves it (taken from the leader's registration only), per cluster its broker
names, and per broker address when it last registered. Time is passed in (``now_ms``).

Failover with Raft groups. Every replica registers with its current role as brokerId (0 = leader)
and, as mqbench's extension, the Raft ``term`` in which it holds that role. The rules, per broker
name, as a table (``term`` None = a plain RocketMQ broker, which has no terms: last one wins, as in
RocketMQ):

=====================================  ==============================================================
registration                           outcome
=====================================  ==============================================================
term None                              apply: drop the address from other ids, set brokerAddrs[id]
term >= highest term seen              apply (a new leader replaces the old one at id 0 at once);
                                       the highest term becomes ``term``
term < highest, as id 0                STALE: refused; a deposed leader must not take id 0 back
term < highest, address now at id 0    STALE: refused; it would move the current leader
term < highest, other follower         apply (a follower that has not yet heard of the new term)
=====================================  ==============================================================

An address that stops registering for ``heartbeat_timeout_ms`` (its own, from the registration, or
the table's ``broker_expiry_ms``) is removed by ``expire``; a broker name left with no address is
removed with its queue data, as RocketMQ does.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from mqbench.broker.formats import codes
from mqbench.broker.formats.topics import validate_topic
from mqbench.errors import UserError

BROKER_EXPIRY_MS_DEFAULT = 10_000  # RocketMQ: 120 s; ours registers every few seconds
MASTER_ID = 0


@dataclass
class QueueData:
    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int = codes.PERM_READ | codes.PERM_WRITE
    topic_sys_flag: int = 0

    def to_json(self) -> dict:
        return {"brokerName": self.broker_name, "readQueueNums": self.read_queue_nums,
                "writeQueueNums": self.write_queue_nums, "perm": self.perm, "topicSysFlag": self.topic_sys_flag}


@dataclass
class BrokerData:
    cluster: str
    broker_name: str
    broker_addrs: dict[int, str] = field(default_factory=dict)
    term: int | None = None  # highest Raft term seen in this broker name's registrations

    def to_json(self) -> dict:
        return {"cluster": self.cluster, "brokerName": self.broker_name,
                "brokerAddrs": {str(i): a for i, a in sorted(self.broker_addrs.items())}}


@dataclass
class TopicEntry:
    """One topic of a broker's topic config table, as the name server needs it."""

    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0


@dataclass
class Registration:
    cluster_name: str
    broker_name: str
    broker_addr: str
    broker_id: int
    ha_server_addr: str = ""
    term: int | None = None
    topics: dict[str, TopicEntry] | None = None
    heartbeat_timeout_ms: int | None = None


@dataclass
class RegisterOutcome:
    accepted: bool
    reason: str = ""
    master_addr: str = ""
    ha_server_addr: str = ""


@dataclass
class _Live:
    broker_name: str
    last_update_ms: int
    timeout_ms: int
    ha_server_addr: str


class RouteTable:
    def __init__(self, *, broker_expiry_ms: int = BROKER_EXPIRY_MS_DEFAULT) -> None:
        self.broker_expiry_ms = broker_expiry_ms
        self.brokers: dict[str, BrokerData] = {}
        self.topic_queues: dict[str, dict[str, QueueData]] = {}
        self.clusters: dict[str, set[str]] = {}
        self.live: dict[str, _Live] = {}

    # --- registration ----------------------------------------------------------------------------

    def register(self, reg: Registration, now_ms: int) -> RegisterOutcome:
        broker = self.brokers.get(reg.broker_name)
        if broker is not None and reg.term is not None and broker.term is not None and reg.term < broker.term:
            moves_leader = reg.broker_id == MASTER_ID or broker.broker_addrs.get(MASTER_ID) == reg.broker_addr
            if moves_leader:
                return RegisterOutcome(False, f"stale registration of {reg.broker_addr} for {reg.broker_name}: "
                                              f"term {reg.term} < current term {broker.term}",
                                       master_addr=broker.broker_addrs.get(MASTER_ID, ""))
        if broker is None:
            broker = self.brokers[reg.broker_name] = BrokerData(reg.cluster_name, reg.broker_name)
        if broker.cluster != reg.cluster_name:
            self.clusters.get(broker.cluster, set()).discard(reg.broker_name)
            broker.cluster = reg.cluster_name
        self.clusters.setdefault(reg.cluster_name, set()).add(reg.broker_name)
        if reg.term is not None and (broker.term is None or reg.term > broker.term):
            broker.term = reg.term
        for broker_id, addr in list(broker.broker_addrs.items()):
            if addr == reg.broker_addr and broker_id != reg.broker_id:
                del broker.broker_addrs[broker_id]  # a replica changed role: slave -> master or back
        broker.broker_addrs[reg.broker_id] = reg.broker_addr
        if reg.broker_id == MASTER_ID and reg.topics is not None:
            for topic, entry in reg.topics.items():
                self.topic_queues.setdefault(topic, {})[reg.broker_name] = QueueData(
                    reg.broker_name, entry.read_queue_nums, entry.write_queue_nums, entry.perm, entry.topic_sys_flag)
        self.live[reg.broker_addr] = _Live(reg.broker_name, now_ms, reg.heartbeat_timeout_ms or self.broker_expiry_ms,
                                           reg.ha_server_addr)
        master = broker.broker_addrs.get(MASTER_ID, "")
        ha = self.live[master].ha_server_addr if master in self.live else ""
        return RegisterOutcome(True, master_addr=master if reg.broker_id != MASTER_ID else "", ha_server_addr=ha)

    def unregister(self, cluster_name: str, broker_name: str, broker_addr: str, broker_id: int) -> bool:
        """Remove one replica's address (UNREGISTER_BROKER); True if it was registered."""
        broker = self.brokers.get(broker_name)
        if broker is None or broker.broker_addrs.get(broker_id) != broker_addr:
            return False
        del broker.broker_addrs[broker_id]
        self.live.pop(broker_addr, None)
        if not broker.broker_addrs:
            self._remove_broker_name(broker_name)
        return True

    def expire(self, now_ms: int) -> list[str]:
        """Drop every address whose registrations stopped; returns the dropped addresses."""
        gone = [addr for addr, live in self.live.items() if now_ms - live.last_update_ms > live.timeout_ms]
        for addr in gone:
            live = self.live.pop(addr)
            broker = self.brokers.get(live.broker_name)
            if broker is None:
                continue
            for broker_id in [i for i, a in broker.broker_addrs.items() if a == addr]:
                del broker.broker_addrs[broker_id]
            if not broker.broker_addrs:
                self._remove_broker_name(live.broker_name)
        return gone

    def _remove_broker_name(self, broker_name: str) -> None:
        broker = self.brokers.pop(broker_name, None)
        if broker is not None:
            names = self.clusters.get(broker.cluster)
            if names is not None:
                names.discard(broker_name)
                if not names:
                    del self.clusters[broker.cluster]
        for topic in list(self.topic_queues):
            self.topic_queues[topic].pop(broker_name, None)
            if not self.topic_queues[topic]:
                del self.topic_queues[topic]

    # --- queries ---------------------------------------------------------------------------------

    def topic_route(self, topic: str) -> dict | None:
        """TopicRouteData as standard JSON-ready dict, or None when no broker serves ``topic``."""
        queues = self.topic_queues.get(topic)
        if not queues:
            return None
        names = sorted(queues)
        return {"queueDatas": [queues[n].to_json() for n in names],
                "brokerDatas": [self.brokers[n].to_json() for n in names if n in self.brokers],
                "filterServerTable": {}}

    def cluster_info(self) -> dict:
        return {"brokerAddrTable": {n: b.to_json() for n, b in sorted(self.brokers.items())},
                "clusterAddrTable": {c: sorted(n) for c, n in sorted(self.clusters.items())}}

    def topic_list(self) -> list[str]:
        return sorted(self.topic_queues)


# --- REGISTER_BROKER body --------------------------------------------------------------------------


def parse_topic_config_table(doc: object, *, body_crc32: int | None = None, raw: bytes = b"") -> dict[str, TopicEntry]:
    """The topics of a RegisterBrokerBody JSON document; UserError naming the problem.

    ``{"topicConfigSerializeWrapper": {"topicConfigTable": {name: {"topicName", "readQueueNums",
    "writeQueueNums", "perm", "topicSysFlag", ...}}, "dataVersion": {...}}, "filterServerList": []}``.
    When ``body_crc32`` is given (and not 0) it must match crc32(raw) & 0x7FFFFFFF, as RocketMQ checks.
    """
    if body_crc32 and (zlib.crc32(raw) & 0x7FFFFFFF) != body_crc32:
        raise UserError(f"REGISTER_BROKER body CRC {zlib.crc32(raw) & 0x7FFFFFFF} does not match bodyCrc32 {body_crc32}")
    if not isinstance(doc, dict):
        raise UserError("REGISTER_BROKER body is not a JSON object")
    wrapper = doc.get("topicConfigSerializeWrapper") or {}
    table = wrapper.get("topicConfigTable") if isinstance(wrapper, dict) else None
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise UserError("REGISTER_BROKER topicConfigTable is not an object")
    topics: dict[str, TopicEntry] = {}
    for name, config in table.items():
        validate_topic(name)
        if not isinstance(config, dict):
            raise UserError(f"REGISTER_BROKER topic {name!r}: config is not an object")
        values = []
        for key, default in (("readQueueNums", None), ("writeQueueNums", None), ("perm", 6), ("topicSysFlag", 0)):
            value = config.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << 31):
                raise UserError(f"REGISTER_BROKER topic {name!r}: {key} is {value!r}, not a non-negative integer")
            values.append(value)
        if values[0] > 65535 or values[1] > 65535:
            raise UserError(f"REGISTER_BROKER topic {name!r}: {values[0]}/{values[1]} queues is more than 65535")
        topics[name] = TopicEntry(*values)
    return topics


def register_body(topics: dict[str, TopicEntry], data_version: dict | None = None) -> dict:
    """The RegisterBrokerBody a broker sends (what ``parse_topic_config_table`` reads)."""
    table = {name: {"topicName": name, "readQueueNums": t.read_queue_nums, "writeQueueNums": t.write_queue_nums,
                    "perm": t.perm, "topicFilterType": "SINGLE_TAG", "topicSysFlag": t.topic_sys_flag, "order": False}
             for name, t in sorted(topics.items())}
    return {"topicConfigSerializeWrapper": {"topicConfigTable": table,
                                            "dataVersion": data_version or {"timestamp": 0, "counter": 0}},
            "filterServerList": []}
