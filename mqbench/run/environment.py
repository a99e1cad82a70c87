"""What a cell runs against: a fresh embedded cluster, or an existing cluster given by its name server.

* ``start_embedded(layout, directory, durability)``: a free port offset (so runs never collide
  with another cluster on this machine), ``mqbench.cluster.launcher.up`` with ``die_with_parent``
  (the cluster ends with this process, however it ends), and what the probes need
  (broker pids, addresses, store directories, each replica's store with its broker group).
  ``stop_embedded`` stops it cleanly.
* ``prepare_topics(env, topics)``: on an embedded cluster, creates each topic on every group's
  leader (UPDATE_AND_CREATE_TOPIC; ``queue.type=BatchCQ`` for a batch-consolidated topic) and waits
  until the name server routes it; on a target, checks that every topic has a route and names the
  missing ones (mqbench never creates topics on someone else's cluster).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from mqbench.broker.layout import Layout, load_layout
from mqbench.errors import UserError

ROUTE_WAIT_S = 30.0
LEADER_WAIT_S = 20.0


@dataclass
class TopicPlan:
    name: str
    queues: int
    batch_cq: bool = False


@dataclass
class Environment:
    namesrv: str
    layout: dict  # the result's ``layout`` field
    embedded: bool
    broker_addrs: list[str] = field(default_factory=list)
    broker_pids: list[int] = field(default_factory=list)
    store_dirs: list[Path] = field(default_factory=list)
    group_stores: list[tuple[str, Path]] = field(default_factory=list)  # (broker group, store) per replica
    state: object = None  # ClusterState of an embedded cluster
    credentials: object = None  # signature.Credentials when the embedded cluster checks an ACL
    layout_object: Layout | None = None
    ray: object = None  # mqbench.ray.engine.RayEngine when workers (and layout hosts) run on Ray nodes


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def free_port_offset(layout: Layout, first: int = 1000, step: int = 20, tries: int = 200, spread: int = 97) -> int:
    """The first offset ``first + k * step`` (k from a start chosen among ``spread`` values, so
    concurrent runs start apart) at which every port of the layout can be bound."""
    start = first + (time.monotonic_ns() // 1000 % spread) * step
    for attempt in range(tries):
        offset = start + attempt * step
        moved = layout.with_port_offset(offset)
        if moved.namesrv_port > 65000:
            break
        ports = [(moved.hosts[moved.namesrv_host], moved.namesrv_port)]
        ports += [(i.address, i.port) for i in moved.instances] + [(i.address, i.raft_port) for i in moved.instances]
        # a node address (a layout for Ray nodes) is checked on its node, not here
        if all(_bindable(address, port) for address, port in ports if ipaddress.ip_address(address).is_loopback):
            return offset
    raise UserError(f"no free ports for layout {layout.name!r} on this machine")


def start_embedded(layout_name: str, directory: Path, durability: str, wait_s: float = 60.0, *,
                   acl_file: Path | None = None, ray=None) -> Environment:
    """Start a fresh cluster of ``layout_name`` under ``directory`` (blocking); with ``acl_file`` its
    brokers check RocketMQ's ACL and ``credentials`` is what the run's clients sign with. With
    ``ray`` (a ``RayEngine``) each layout host's brokers run on a Ray node of their own."""
    from mqbench.cluster.launcher import cluster_credentials, cluster_layout, up
    from mqbench.harness.results import layout_summary

    layout = load_layout(layout_name)
    offset = free_port_offset(layout)
    placer = None if ray is None else ray.host_placer()
    state = up(layout_name, directory, port_offset=offset, durability=durability, wait_s=wait_s, acl_file=acl_file,
               die_with_parent=True, placer=placer)
    moved = cluster_layout(state)     # on Ray nodes: the hosts' node addresses
    brokers = [r for r in state.processes.values() if r.kind == "broker"]
    return Environment(namesrv=moved.namesrv_addr, layout=layout_summary(moved), embedded=True,
                       broker_addrs=[i.addr for i in moved.instances], broker_pids=[r.pid for r in brokers],
                       store_dirs=[Path(r.workdir) / "store" for r in brokers], state=state, layout_object=moved,
                       credentials=cluster_credentials(state),
                       group_stores=[(r.name.split("/")[0], Path(r.workdir) / "store") for r in brokers], ray=ray)


def stop_embedded(env: Environment) -> None:
    from mqbench.cluster.launcher import down

    if env.state is not None:
        down(env.state, timeout_s=10.0)
        env.state = None


async def _leaders(env: Environment, wait_s: float = LEADER_WAIT_S) -> list[str]:
    """The leader's address of every group, waiting out an election (a preferred-leader transfer
    right after start-up leaves a group briefly without one)."""
    from mqbench.admin.calls import query_runtime_info

    deadline = time.monotonic() + wait_s
    leaders = []
    for group in env.layout_object.groups:
        while True:
            for instance in env.layout_object.group_instances(group):
                try:
                    info = await query_runtime_info(instance.addr, 2.0, credentials=env.credentials)
                except Exception:  # noqa: BLE001 - an unreachable replica cannot be the leader we want
                    continue
                if info.get("raftRole") == "leader":
                    leaders.append(instance.addr)
                    break
            else:
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    continue
                raise UserError(f"group {group} has no reachable leader after {wait_s:.0f} s")
            break
    return leaders


async def prepare_topics(env: Environment, topics: list[TopicPlan]) -> dict:
    """Create (embedded) or check (target) the topics; returns ``{"brokers": n}`` from the routes."""
    from mqbench.client.connections import ConnectionPool, NameServerClient

    if env.embedded:
        from mqbench.admin.calls import create_topic

        for addr in await _leaders(env):
            for topic in topics:
                attributes = {"queue.type": "BatchCQ"} if topic.batch_cq else None
                await create_topic(addr, topic.name, queues=topic.queues, attributes=attributes, timeout_s=10,
                                   credentials=env.credentials)
    pool = ConnectionPool(connect_timeout_ms=3000)
    namesrv = NameServerClient(env.namesrv, pool, timeout_ms=3000)
    brokers: set[str] = set()
    try:
        deadline = time.monotonic() + (ROUTE_WAIT_S if env.embedded else 0)
        missing = [t.name for t in topics]
        while True:
            still = []
            for name in missing:
                route = await namesrv.route(name)
                if route is None or not route.write_queues():
                    still.append(name)
                else:
                    brokers.update(route.brokers)
            missing = still
            if not missing or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.3)
    finally:
        await pool.close()
    if missing:
        where = "the embedded cluster did not route" if env.embedded else f"the name server {env.namesrv} has no route for"
        raise UserError(f"{where} topic(s) {', '.join(missing)}"
                        + ("" if env.embedded else "; create them on the cluster first (mqbench does not)"))
    return {"brokers": len(brokers)}


async def target_layout(namesrv: str, brokers_routed: int) -> dict:
    """The ``layout`` field for an existing cluster: its real hosts, broker groups and replicas, as its
    name server and brokers tell (``mqbench.admin.cluster.query_cluster``, with ``brokers``: broker
    name -> replica addresses). When the name server gives no cluster info, one host per broker
    that routes the run's topics (``brokers_routed``), and ``source`` says so."""
    from mqbench.admin.calls import AdminError
    from mqbench.admin.cluster import query_cluster

    try:
        view = await query_cluster(namesrv)
    except AdminError as exc:
        view, reason = None, str(exc)
    else:
        reason = "the name server lists no broker"
    if view is not None and view.groups and view.replicas:
        return view.layout_summary() | {"source": "cluster info"}
    brokers = max(1, brokers_routed)
    return {"name": f"target {namesrv}", "hosts": brokers, "groups": brokers, "replicas_per_group": 1,
            "instances": brokers, "instances_per_host": 1.0, "source": f"topic routes ({reason})"}
