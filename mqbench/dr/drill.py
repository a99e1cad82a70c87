"""One DR drill: start a scheme's cluster(s), run traffic, inject a fault, heal, measure.

Phases (``DrillSettings``, all in ms): ``warmup_ms`` (not measured), ``baseline_ms`` with every inter-room link transparent (the
write latency of the same cluster without distance), ``before_ms`` with the layout's links (the
added write latency, cross-room bytes per message), then the fault: a burst of ``burst`` sends is
acknowledged and the fault lands at once (the worst moment for an asynchronous scheme), it lasts
``outage_ms``, the drill heals (restarts what it killed, ends the partition) and runs ``after_ms``
more. Then the consumer group is drained and a fresh group reads back everything the cluster serves:
RPO is what was acknowledged and is not there.

Faults and their default targets (``target`` overrides): ``instance``: the group's leader;
``host``: the leader's host (all its instances); ``room``: the leader's room (every instance in it);
``partition``: the leader's room is cut off from the other rooms (processes keep running).

Scheme C (``dr-c`` and its standby): the replicator runs in room2 and reads room1 across the
room link (its own proxies). A ``room`` fault on room1 is the loss of the room: its link to room2 is
cut first, then its brokers are killed and stay dead; after ``switch_after_ms`` without a working
room1 the clients move to the standby cluster (producer and the same consumer group, whose offsets
the replicator translated) and RPO is read back from the standby. A ``partition`` cuts room1 from
room2 only: clients keep writing to room1, replication stalls, and the note gives the replication
lag when the partition heals (the loss a room failure at that moment would cause); RPO is then
read back from room1. Instance and host faults stay inside room1's cluster, measured as in A and B.

On Ray nodes (``run_drill(settings, placer)``, ``mqbench dr --cluster ray://...``): every scheme
and fault. The hosts are placed on Ray nodes by the placer ``mqbench run`` and ``mqbench cluster
up`` use (``dr.cluster.up``); instance, host and room faults are SIGKILLs and restarts through the
hosts' node actors. The inter-room proxies run in the host actors on the nodes (``ray.links``), so a
partition is cut where the traffic leaves a node; they add no delay (the real network between the
nodes is the link), so there is no no-rooms baseline phase and no added-latency figure (null), and
the cross-room bytes are counted by the nodes' proxies. Scheme C's standby is a second placed
cluster (its ports moved by ``STANDBY_PORT_SHIFT`` so that both fit on one node set, as on a
local test cluster), and its replicator with its link to room1 runs in the standby name server
host's actor (``ray.links.RemoteReplicator``): a partition or room loss cuts it on that node.
``ray_refusal`` says what cannot run on Ray nodes (nothing now), before anything starts.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mqbench.broker.layout import Layout, load_layout
from mqbench.dr.netem import NO_DELAY
from mqbench.admin.calls import query_runtime_info
from mqbench.cluster import control, launcher
from mqbench.dr import cluster as drcluster
from mqbench.dr.measure import FailoverTimes, duplicate_deliveries, lost_messages, percentile_ms, rto_split
from mqbench.dr.room_link import LinkedReplicator
from mqbench.dr.workload import NETWORK_ERRORS, Deliveries, Workload, now_ms, read_back
from mqbench.errors import UserError

log = logging.getLogger(__name__)

SCHEME_LAYOUTS = {"A": "dr-a", "B": "dr-b", "C": "dr-c"}
FAULTS = ("instance", "host", "room", "partition")
POLL_S = 0.05


@dataclass
class DrillSettings:
    scheme: str
    fault: str
    directory: Path
    target: str | None = None
    workload: str = "orders"
    rate_per_s: int = 100
    warmup_ms: int = 1000
    baseline_ms: int = 1500
    before_ms: int = 1500
    outage_ms: int = 4000
    after_ms: int = 1500
    burst: int = 20
    switch_after_ms: int = 1000
    durability: str = "memory"
    port_offset: int = 0
    seed: int = 0
    wait_s: float = 60.0
    ray: str | None = None      # the Ray cluster's address when the hosts run on its nodes (recorded)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEME_LAYOUTS:
            raise UserError(f"scheme {self.scheme!r} is not one of {', '.join(SCHEME_LAYOUTS)}")
        if self.fault not in FAULTS:
            raise UserError(f"fault {self.fault!r} is not one of {', '.join(FAULTS)}")
        if self.ray is not None and (refusal := ray_refusal(self.scheme, self.fault)):
            raise UserError(refusal)
        for name in ("warmup_ms", "baseline_ms", "before_ms", "outage_ms", "after_ms", "switch_after_ms"):
            if not 0 <= getattr(self, name) <= 600_000:
                raise UserError(f"{name} must be 0..600000 ms")
        if not 0 <= self.burst <= 1000:
            raise UserError("burst must be 0..1000 messages")


RAY_SCHEMES = ("A", "B", "C")
RAY_FAULTS = FAULTS
STANDBY_PORT_SHIFT = 20     # scheme C's standby ports on Ray nodes (module doc)


def ray_refusal(scheme: str, fault: str) -> str | None:
    """Why a drill of ``scheme`` with ``fault`` cannot run on Ray nodes (one line), or None (module doc)."""
    if scheme not in RAY_SCHEMES:
        return f"scheme {scheme} is not supported on Ray nodes; give --scheme {' or '.join(RAY_SCHEMES)}"
    if fault not in RAY_FAULTS:
        return f"--fault {fault} is not supported on Ray nodes; use --fault {', '.join(RAY_FAULTS)}"
    return None


@dataclass
class DrillResult:
    scheme: str
    layout: str
    fault: str
    target: str
    rpo_promised_zero: bool
    instances: int
    acked: int
    lost: list[int]
    duplicates: int
    rto: dict
    latency: dict
    cross_room_bytes_per_msg: float | None
    notes: list[str] = field(default_factory=list)
    ray_nodes: dict[str, str] | None = None     # host -> its Ray node ("hostname/ip"), on Ray only

    def row(self) -> dict:
        """The flat, unit-suffixed record of this drill (``--json`` and result files)."""
        return {"scheme": self.scheme, "layout": self.layout, "fault": self.fault, "target": self.target,
                "rpo_promised_zero": self.rpo_promised_zero, "acked_msgs": self.acked,
                "rpo_lost_msgs": len(self.lost), "lost_seqs_first": self.lost[:20], "duplicates_msgs": self.duplicates,
                **self.rto, **self.latency, "instances": self.instances,
                "cross_room_bytes_per_msg": self.cross_room_bytes_per_msg, "notes": list(self.notes),
                "ray_nodes": None if self.ray_nodes is None else dict(self.ray_nodes)}


def choose_target(layout: Layout, fault: str, leader_name: str, target: str | None) -> str:
    """The fault's target: given (checked against the layout) or derived from the leader."""
    leader = layout.instance(leader_name)
    if target is None:
        return {"instance": leader.name, "host": leader.host, "room": leader.room, "partition": leader.room}[fault]
    valid = {"instance": [i.name for i in layout.instances], "host": sorted({i.host for i in layout.instances}),
             "room": sorted({i.room for i in layout.instances}), "partition": sorted({i.room for i in layout.instances})}
    if target not in valid[fault]:
        raise UserError(f"--target {target!r} is not a {'room' if fault == 'partition' else fault} with brokers in "
                        f"layout {layout.name!r}; choose from {', '.join(valid[fault])}")
    return target


def victims(layout: Layout, fault: str, target: str) -> list[str]:
    """Instance names the fault takes down (a partition takes none down: they keep running)."""
    if fault == "instance":
        return [target]
    if fault == "host":
        return [i.name for i in layout.instances if i.host == target]
    if fault == "room":
        return [i.name for i in layout.instances if i.room == target]
    return []


async def _leader(cluster: drcluster.DrCluster, group: str) -> tuple[str, int]:
    row = await control.wait_healthy(cluster.state, group, 30)
    info = await query_runtime_info(row.addr, 2.0)
    return row.name, int(info.get("raftTerm", 0))


async def _watch(cluster: drcluster.DrCluster, group: str, old_leader: str, old_term: int, down: set[str],
                 fault_ms: int, times: FailoverTimes, stop: asyncio.Event) -> None:
    """Poll the survivors until a new leader is routed (or ``stop``): fills detection/election/ready."""
    layout = cluster.layout
    survivors = [i for i in layout.group_instances(group) if i.name not in down]

    async def info(instance) -> dict:
        try:
            return await query_runtime_info(instance.addr, 0.5)
        except NETWORK_ERRORS:
            return {}

    while not stop.is_set() and times.ready_ms is None:
        rows = await asyncio.gather(*(info(i) for i in survivors))
        t = now_ms() - fault_ms
        for instance, row in zip(survivors, rows):
            if not row:
                continue
            term = int(row.get("raftTerm", 0) or 0)
            if times.detected_ms is None and instance.name != old_leader and (
                    row.get("raftRole") == "candidate" or term > old_term
                    or row.get("raftLeaderId", old_leader) != old_leader):
                times.detected_ms = t
            if times.elected_ms is None and row.get("raftRole") == "leader" and term > old_term:
                times.elected_ms = t
                times.detected_ms = t if times.detected_ms is None else times.detected_ms
                new_leader = instance
        if times.elected_ms is not None:
            routed = await launcher._namesrv_masters(layout.namesrv_addr, 0.5)
            if routed.get(group) == new_leader.addr:
                times.ready_ms = now_ms() - fault_ms
        await asyncio.sleep(POLL_S)


async def _phases(settings: DrillSettings, work: Workload, fabric_transparent, crossed) -> tuple[dict, float | None]:
    """Warm-up, no-rooms baseline, linked phase. Returns the latency figures and the cross-room
    bytes per message of the linked phase (``await crossed()`` -> (bytes so far, messages so far)).
    ``fabric_transparent`` None (Ray nodes: the links are the real network): no baseline phase, and
    the added latency is None."""
    work.traffic.phase = "warmup"  # connections, routes and caches warming up: not measured
    if fabric_transparent is None:
        await asyncio.sleep(settings.warmup_ms / 1000)
        work.traffic.phase = "linked"
        bytes_start, messages_start = await crossed()
        await asyncio.sleep(settings.before_ms / 1000)
        bytes_end, messages_end = await crossed()
        linked = work.traffic.latencies_ms("linked")
        return {"write_latency_ms_p50_no_rooms": None, "write_latency_ms_p50": percentile_ms(linked, 50),
                "write_latency_ms_p99": percentile_ms(linked, 99), "write_latency_added_ms_p50": None}, \
            _per_msg(bytes_end - bytes_start, messages_end - messages_start)
    fabric_transparent(True)
    await asyncio.sleep(settings.warmup_ms / 1000)
    work.traffic.phase = "baseline"
    await asyncio.sleep(settings.baseline_ms / 1000)
    fabric_transparent(False)
    work.traffic.phase = "linked"
    bytes_start, messages_start = await crossed()
    await asyncio.sleep(settings.before_ms / 1000)
    bytes_end, messages_end = await crossed()
    base, linked = work.traffic.latencies_ms("baseline"), work.traffic.latencies_ms("linked")
    p50_base, p50_linked = percentile_ms(base, 50), percentile_ms(linked, 50)
    latency = {"write_latency_ms_p50_no_rooms": p50_base, "write_latency_ms_p50": p50_linked,
               "write_latency_ms_p99": percentile_ms(linked, 99),
               "write_latency_added_ms_p50": None if p50_base is None or p50_linked is None
               else p50_linked - p50_base}
    return latency, _per_msg(bytes_end - bytes_start, messages_end - messages_start)


async def run_drill(settings: DrillSettings, placer=None) -> DrillResult:
    """Run one drill (module docstring); every process and proxy it started is stopped on return.
    ``placer`` (``RayEngine.host_placer()``, with ``settings.ray`` set): the hosts run on Ray nodes."""
    if placer is not None and (refusal := ray_refusal(settings.scheme, settings.fault)):
        raise UserError(refusal)
    if settings.scheme == "C":
        return await _run_c(settings, placer)
    layout = load_layout(SCHEME_LAYOUTS[settings.scheme]).with_port_offset(settings.port_offset)
    group = next(iter(layout.groups))
    run_id = uuid.uuid4().hex[:8]
    topic = f"DR{settings.scheme}{run_id}"
    cluster = await asyncio.to_thread(drcluster.up, layout.source, settings.directory / layout.name,
                                      port_offset=settings.port_offset, durability=settings.durability,
                                      wait_s=settings.wait_s, seed=settings.seed, placer=placer)
    notes: list[str] = []
    nodes = None
    try:
        if cluster.on_ray:
            nodes = _ray_nodes(cluster)
            notes.append(RAY_NOTE)
        await control.ensure_topic(cluster.state, group, topic)
        work = Workload(cluster.namesrv_addr, topic, model=settings.workload, rate_per_s=settings.rate_per_s,
                        seed=settings.seed, run_id=run_id)
        consumer = Deliveries(cluster.namesrv_addr, topic, work.traffic)
        await consumer.start()
        await work.start()
        fabric = cluster.fabric
        transparent = None if cluster.on_ray else fabric.set_transparent     # on Ray nodes: nothing to switch

        async def crossed() -> tuple[int, int]:
            return await asyncio.to_thread(fabric.cross_room_bytes), len(work.traffic.acked())
        latency, bytes_per_msg = await _phases(settings, work, transparent, crossed)
        leader, term = await _leader(cluster, group)
        target = choose_target(layout, settings.fault, leader, settings.target)
        down = victims(layout, settings.fault, target)
        await work.burst(settings.burst)
        work.traffic.phase = "outage"
        times, stop = FailoverTimes(), asyncio.Event()
        if settings.fault == "partition":
            await asyncio.to_thread(fabric.cut_room, target)
            notes.append(f"{target} cut off from the other rooms" + (" in the nodes' room links" if cluster.on_ray
                                                                       else ""))
        else:
            hit = await asyncio.to_thread(_kill, cluster, down)
            notes.append(f"killed {', '.join(hit)}")
        fault_ms = now_ms()  # the fault is in place: sends issued from now on meet it
        needs_failover = leader in down or (settings.fault == "partition" and layout.instance(leader).room == target)
        watcher = asyncio.create_task(_watch(cluster, group, leader, term, set(down), fault_ms, times, stop)) \
            if needs_failover else None
        await asyncio.sleep(settings.outage_ms / 1000)
        times.first_ack_ms = _first_ack_after(work, fault_ms)
        if settings.fault == "partition":
            await asyncio.to_thread(fabric.heal)
        else:
            await asyncio.to_thread(_restart, cluster, down)
        work.traffic.phase = "healed"
        try:
            await control.wait_healthy(cluster.state, group, 30)
        except UserError as exc:
            notes.append(f"not healthy 30 s after the heal: {exc}")
        await asyncio.sleep(settings.after_ms / 1000)
        if times.first_ack_ms is None:
            times.first_ack_ms = _first_ack_after(work, fault_ms)
            notes.append("writes came back only after the heal")
        stop.set()
        if watcher is not None:
            await watcher
        await work.stop()
        acked = work.traffic.acked()
        await control.wait_healthy(cluster.state, group, 30)
        await consumer.wait_for(acked, 15)
        await consumer.stop()
        present = await read_back(cluster.namesrv_addr, topic, run_id, acked)
        return DrillResult(
            scheme=settings.scheme, layout=layout.name, fault=settings.fault, target=target,
            rpo_promised_zero=layout.dr.promises_rpo_zero(settings.fault, target), instances=len(layout.instances),
            acked=len(acked), lost=lost_messages(acked, present), duplicates=duplicate_deliveries(work.traffic.delivered),
            rto=rto_split(times), latency=latency, cross_room_bytes_per_msg=bytes_per_msg, notes=notes,
            ray_nodes=nodes)
    finally:
        await asyncio.to_thread(drcluster.down, cluster)


RAY_NOTE = ("on Ray nodes: the rooms' links are the nodes' real network through proxies on the nodes (no baseline "
            "without rooms, no added latency measured)")


def _ray_nodes(*clusters: drcluster.DrCluster) -> dict[str, str]:
    """host -> its Ray node ("hostname/ip"); the standby's hosts prefixed ``standby:``."""
    out = {}
    for n, cluster in enumerate(clusters):
        for host, where in cluster.state.settings["ray"]["hosts"].items():
            out[("standby:" if n else "") + host] = where["node"]
    return out


def _kill(cluster: drcluster.DrCluster, names: list[str]) -> list[str]:
    hit = []
    for name in names:
        hit += launcher.kill(cluster.state, name)
    return hit


def _restart(cluster: drcluster.DrCluster, names: list[str]) -> None:
    for name in names:
        launcher.start(cluster.state, name)


def _first_ack_after(work: Workload, fault_ms: int) -> int | None:
    """Ms from the fault to the first acknowledgement of a send issued after it (an ack of a send
    committed before the fault says nothing about recovery)."""
    after = [s.acked_ms - fault_ms for s in work.traffic.sends if s.acked_ms is not None and s.started_ms >= fault_ms]
    return min(after) if after else None


def _per_msg(size_bytes: int, messages: int) -> float | None:
    return round(size_bytes / messages, 1) if messages > 0 else None


# --- scheme C ---------------------------------------------------------------------------------------


async def _start_copier(active: drcluster.DrCluster, standby: drcluster.DrCluster, topic: str, seed):
    """Scheme C's replicator with its link to room1 (``dr.room_link``): here, or in the standby name
    server host's actor on its node when the clusters are on Ray nodes (``ray.links.RemoteReplicator``)."""
    layout = active.layout
    args = {"source_namesrv": layout.namesrv_addr, "source_addrs": [i.addr for i in layout.instances],
            "target_namesrv": standby.namesrv_addr, "topics": [topic], "groups": ["GID_dr"], "seed": seed}
    if not standby.on_ray:
        return await LinkedReplicator(link=layout.link_between("room1", "room2"), **args).start()
    from mqbench.ray.links import RemoteReplicator

    return await RemoteReplicator(standby.state.hosts(), standby.layout.namesrv_host).start(link=NO_DELAY, **args)


async def _run_c(settings: DrillSettings, placer=None) -> DrillResult:
    active_layout = load_layout("dr-c").with_port_offset(settings.port_offset)
    standby_shift = STANDBY_PORT_SHIFT if placer is not None else 0
    standby_layout = load_layout(active_layout.dr.standby).with_port_offset(settings.port_offset + standby_shift)
    group, standby_group = next(iter(active_layout.groups)), next(iter(standby_layout.groups))
    if settings.fault in ("room", "partition") and settings.target not in (None, "room1"):
        raise UserError("scheme C has one room per cluster: a room fault or partition targets room1 (the active room)")
    room_loss, partition = settings.fault == "room", settings.fault == "partition"
    run_id = uuid.uuid4().hex[:8]
    topic = f"DRC{run_id}"
    active = await asyncio.to_thread(drcluster.up, active_layout.source, settings.directory / "dr-c",
                                     port_offset=settings.port_offset, durability=settings.durability,
                                     wait_s=settings.wait_s, seed=settings.seed, placer=placer)
    standby = copier = None
    notes: list[str] = []
    try:
        standby = await asyncio.to_thread(drcluster.up, standby_layout.source, settings.directory / "dr-c-standby",
                                          port_offset=settings.port_offset + standby_shift,
                                          durability=settings.durability, wait_s=settings.wait_s, seed=settings.seed,
                                          placer=placer)
        nodes = None
        if placer is not None:
            nodes = _ray_nodes(active, standby)
            notes.append(RAY_NOTE + f"; the replicator runs on standby host {standby.layout.namesrv_host}'s node")
        await control.ensure_topic(active.state, group, topic)
        await control.ensure_topic(standby.state, standby_group, topic)
        copier = await _start_copier(active, standby, topic, settings.seed)
        work = Workload(active.namesrv_addr, topic, model=settings.workload, rate_per_s=settings.rate_per_s,
                        seed=settings.seed, run_id=run_id)
        consumer = Deliveries(active.namesrv_addr, topic, work.traffic)
        await consumer.start()
        await work.start()

        async def crossed() -> tuple[int, int]:
            return await copier.bytes(), await copier.copied()
        latency, bytes_per_msg = await _phases(settings, work, None if placer is not None else copier.set_transparent,
                                               crossed)
        leader, term = await _leader(active, group)
        target = "room1" if room_loss or partition else choose_target(active_layout, settings.fault, leader,
                                                                        settings.target)
        down = victims(active_layout, settings.fault, target)
        await work.burst(settings.burst)
        work.traffic.phase = "outage"
        times, stop = FailoverTimes(), asyncio.Event()
        watcher = None
        if room_loss:
            await copier.cut()  # the room vanishes from the network first, then its machines are gone
            await asyncio.to_thread(active.fabric.cut_room, "room1")
            hit = await asyncio.to_thread(_kill, active, down)
            fault_ms = now_ms()
            notes.append(f"room1 lost: killed {', '.join(hit)}; clients switched to the standby cluster")
            times.detected_ms = await _wait_unavailable(work, fault_ms)
            await asyncio.sleep(settings.switch_after_ms / 1000)
            times.elected_ms = times.detected_ms  # the standby's leader is already elected
            await work.switch(standby.namesrv_addr)
            times.ready_ms = now_ms() - fault_ms
            await consumer.switch(standby.namesrv_addr)
        elif partition:  # room1 is cut off from room2; clients (in no room) keep writing to room1
            await copier.cut()
            fault_ms = now_ms()
        else:
            hit = await asyncio.to_thread(_kill, active, down)
            fault_ms = now_ms()
            notes.append(f"killed {', '.join(hit)}")
            if leader in down:
                watcher = asyncio.create_task(_watch(active, group, leader, term, set(down), fault_ms, times, stop))
        await asyncio.sleep(settings.outage_ms / 1000)
        times.first_ack_ms = _first_ack_after(work, fault_ms)
        if partition:
            window = await copier.lag_total()
            notes.append(f"{window} acknowledged messages were not in room2 when the partition healed: what "
                         "losing room1 at that moment would have lost")
            await copier.heal()
        elif not room_loss:
            await asyncio.to_thread(_restart, active, down)
        work.traffic.phase = "healed"
        await asyncio.sleep(settings.after_ms / 1000)
        stop.set()
        if watcher is not None:
            await watcher
        await work.stop()
        acked = work.traffic.acked()
        serving = standby if room_loss else active
        if not room_loss:
            await control.wait_healthy(active.state, group, 30)
        await consumer.wait_for(acked, 10)
        await consumer.stop()
        present = await read_back(serving.namesrv_addr, topic, run_id, acked)
        if room_loss:
            notes.append(f"replicator copied {await copier.copied()} messages before the loss")
        return DrillResult(
            scheme="C", layout="dr-c+dr-c-standby", fault=settings.fault, target=target,
            rpo_promised_zero=active_layout.dr.promises_rpo_zero(settings.fault, target),
            instances=len(active_layout.instances) + len(standby_layout.instances), acked=len(acked),
            lost=lost_messages(acked, present), duplicates=duplicate_deliveries(work.traffic.delivered),
            rto=rto_split(times), latency=latency, cross_room_bytes_per_msg=bytes_per_msg, notes=notes,
            ray_nodes=nodes)
    finally:
        if copier is not None:
            await copier.close()
        if standby is not None:
            await asyncio.to_thread(drcluster.down, standby)
        await asyncio.to_thread(drcluster.down, active)


async def _wait_unavailable(work: Workload, fault_ms: int, timeout_ms: int = 30_000) -> int:
    """Ms from the fault until the clients saw the room fail: the first send that gave up after it."""
    while True:
        failed = [s.failed_ms for s in work.traffic.sends if s.failed_ms is not None and s.failed_ms >= fault_ms]
        if failed:
            return min(failed) - fault_ms
        if now_ms() - fault_ms > timeout_ms:
            return now_ms() - fault_ms
        await asyncio.sleep(POLL_S)
