"""What a cluster really is, asked the way mqadmin's ``clusterList`` asks: the name server's
cluster info (GET_BROKER_CLUSTER_INFO: cluster -> broker names -> {brokerId: address}) and each
broker's runtime info (GET_BROKER_RUNTIME_INFO). Works on the reference cluster and on a real
RocketMQ cluster (``--target``) alike.

``await query_cluster(namesrv, timeout_s=3) -> ClusterView``:

* ``groups``: one ``BrokerGroup`` per broker name (a master/slave set, or a Raft/DLedger group),
  sorted by cluster and name, each with its ``replicas`` sorted by brokerId;
* a ``Replica``: ``broker_id`` (0 = master/leader), ``addr``, ``role`` (the reference broker's
  ``raftRole``: leader/follower/candidate; otherwise ``master`` for id 0 and ``slave`` else;
  ``unreachable`` when its runtime info did not come, ``refused`` when it answered with an error,
  e.g. an ACL without keys), ``version`` (``brokerVersionDesc``), ``term`` (Raft term, reference
  broker only), ``put_10s_msgs_per_s`` / ``get_10s_msgs_per_s`` (from ``putTps`` /
  ``getTransferedTps``), ``error`` (why it is unreachable or refused);
* ``hosts``: the distinct host addresses of all replicas (a host = an IP address).

``view.to_json()`` is the ``mqbench.admin-cluster/1`` document (fields in ``SCHEMA_DOC``);
``view.layout_summary()`` is a run result's ``layout`` field for a ``--target`` cluster (real hosts,
groups and replicas instead of one host per broker). A name server that does not answer raises
``AdminError``; a broker that does not answer is listed as unreachable.
"""
from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field

from mqbench.admin.calls import AdminError, AdminSession

SCHEMA = "mqbench.admin-cluster/1"
SCHEMA_DOC = """\
mqbench.admin-cluster/1: schema, tool_version, namesrv, clusters [names], hosts (distinct host
addresses), groups_count, replicas_count, groups [{cluster, broker_name, replicas [{broker_id, addr,
role, version, term, put_10s_msgs_per_s, get_10s_msgs_per_s, error}]}]"""


@dataclass
class Replica:
    broker_id: int
    addr: str
    role: str
    version: str = ""
    term: int | None = None
    put_10s_msgs_per_s: float | None = None
    get_10s_msgs_per_s: float | None = None
    error: str | None = None

    @property
    def host(self) -> str:
        return self.addr.rpartition(":")[0]


@dataclass
class BrokerGroup:
    cluster: str
    broker_name: str
    replicas: list[Replica] = field(default_factory=list)

    @property
    def master(self) -> Replica | None:
        return next((r for r in self.replicas if r.broker_id == 0), None)


@dataclass
class ClusterView:
    namesrv: str
    groups: list[BrokerGroup]

    @property
    def clusters(self) -> list[str]:
        return sorted({g.cluster for g in self.groups})

    @property
    def replicas(self) -> list[Replica]:
        return [r for g in self.groups for r in g.replicas]

    @property
    def hosts(self) -> list[str]:
        return sorted({r.host for r in self.replicas})

    def group(self, broker_name: str) -> BrokerGroup | None:
        return next((g for g in self.groups if g.broker_name == broker_name), None)

    def master_addrs(self) -> dict[str, str]:
        """Broker name -> master (leader) address, for the groups that have one."""
        return {g.broker_name: g.master.addr for g in self.groups if g.master is not None}

    def to_json(self) -> dict:
        from mqbench import __version__

        return {"schema": SCHEMA, "tool_version": __version__, "namesrv": self.namesrv, "clusters": self.clusters,
                "hosts": self.hosts, "groups_count": len(self.groups), "replicas_count": len(self.replicas),
                "groups": [{"cluster": g.cluster, "broker_name": g.broker_name,
                            "replicas": [asdict(r) for r in g.replicas]} for g in self.groups]}

    def layout_summary(self) -> dict:
        """The run result's ``layout`` field for this cluster (``mqbench.harness.results`` names the
        fields), plus ``brokers``: broker name -> [replica addresses, master first]."""
        hosts = max(1, len(self.hosts))
        instances = len(self.replicas)
        return {"name": f"target {self.namesrv}", "hosts": hosts, "groups": len(self.groups),
                "replicas_per_group": max((len(g.replicas) for g in self.groups), default=0),
                "instances": instances, "instances_per_host": instances / hosts,
                "brokers": {g.broker_name: [r.addr for r in g.replicas] for g in self.groups}}


def _tps(text: str | None) -> float | None:
    try:
        return float((text or "").split()[0])
    except (IndexError, ValueError):
        return None


def replica_from_runtime(broker_id: int, addr: str, info: dict[str, str]) -> Replica:
    """A replica as its runtime info describes it (module doc: the role rule)."""
    role = info.get("raftRole") or ("master" if broker_id == 0 else "slave")
    term = info.get("raftTerm", "")
    return Replica(broker_id, addr, role, version=info.get("brokerVersionDesc", ""),
                   term=int(term) if term.lstrip("-").isdigit() else None,
                   put_10s_msgs_per_s=_tps(info.get("putTps")), get_10s_msgs_per_s=_tps(info.get("getTransferedTps")))


async def query_cluster_in(session: AdminSession) -> ClusterView:
    """``query_cluster`` over an open session."""
    brokers = await session.cluster_info()

    async def replica(broker_id: int, addr: str) -> Replica:
        try:
            return replica_from_runtime(broker_id, addr, await session.runtime_info(addr))
        except AdminError as exc:   # no answer, or an answer refusing it (an ACL without keys, ...)
            return Replica(broker_id, addr, "unreachable" if exc.code is None else "refused", error=str(exc))

    groups = []
    for b in brokers:
        ids = sorted(b.addrs)
        replicas = await asyncio.gather(*(replica(i, b.addrs[i]) for i in ids))
        groups.append(BrokerGroup(b.cluster, b.broker_name, list(replicas)))
    return ClusterView(session.namesrv.addrs[0] if len(session.namesrv.addrs) == 1
                       else ";".join(session.namesrv.addrs), groups)


async def query_cluster(namesrv: str, timeout_s: float = 3.0) -> ClusterView:
    """The cluster behind the name server(s) ``namesrv`` (module doc)."""
    if not namesrv or not namesrv.strip():
        raise AdminError("no name server address given")
    async with AdminSession(namesrv, timeout_s=timeout_s) as session:
        return await query_cluster_in(session)
