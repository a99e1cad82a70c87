"""Start, inspect and stop a reference cluster laid out by a layout file.

``up`` checks that every port of the layout is free, starts the name server, waits until it
listens, starts every broker instance of the layout as real OS processes (see ``processes``), then
waits until every group has a leader that answers *and* the name server routes to it (so a client
can send the moment ``up`` returns), and up to 10 s more until groups with a preferred leader are
led from it (so the leaders do not move right after ``up`` returns). ``status`` asks every instance for its role. ``kill`` signals
an instance, a host (all its broker instances), a room or a group, for drills; ``start`` brings
killed processes back with the same store and ports, and resumes SIGSTOPped ones.

Errors a user can cause (unknown layout, busy port, a directory whose cluster still runs, an
unknown target or group, a process that dies while starting) raise ``UserError`` with one line
naming the problem (plus the dead process's last log lines).

The broker instance process is ``python -m mqbench.broker.server.main``; it reads the same layout
file, so every process agrees on addresses, peers and preferred leaders. ``up`` creates the
cluster secret ``DIR/cluster.secret`` (mode 0600; kept when the directory already has one) and
passes it to the name server and every broker: Raft frames and registrations are authenticated.

Every process check, signal, start and stop goes through ``state.hosts()`` (``processes``): this
machine's psutil, or, for a layout placed on Ray nodes (``up(..., placer=...)``, see
``mqbench.ray.hosts``), the node actor of each host. A placed layout's hosts listen on their nodes'
addresses; the local port check and the loopback-only rule apply to local clusters only.
"""
from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from mqbench.broker.cluster_secret import CLUSTER_ACCESS_KEY, SECRET_FILE, create_secret_file, read_secret_file
from mqbench.broker.formats.signature import Credentials
from mqbench.broker.layout import Layout, load_layout
from mqbench.broker.server.acl import load_acl_file
from mqbench.cluster.owners import lifeline_for, owner_settings, release
from mqbench.cluster.processes import LOCAL, ClusterState, ProcessRecord, ProcessStillAlive, python_argv
from mqbench.errors import UserError

BROKER_MODULE = "mqbench.broker.server.main"
NAMESRV_MODULE = "mqbench.broker.namesrv"
PREFERRED_WAIT_S = 10.0  # how long ``up`` waits for preferred leaders to take their groups


@dataclass
class InstanceStatus:
    name: str
    group: str
    replica_id: str
    host: str
    room: str
    addr: str
    process: str  # "running" | "down"
    role: str  # "leader" | "follower" | "candidate" | "unreachable" | "down"
    term: int | None = None
    leader_id: str | None = None
    pid: int | None = None
    commit_index: int | None = None


def cluster_credentials(state: ClusterState) -> Credentials | None:
    """What the cluster's own tooling signs its broker requests with when the brokers check an ACL:
    the cluster secret under ``mqbench-cluster`` (the brokers add it as an admin account)."""
    if not state.settings.get("acl"):
        return None
    secret = read_secret_file(state.directory / SECRET_FILE)
    return Credentials(CLUSTER_ACCESS_KEY, secret.hex())


def cluster_layout(state: ClusterState) -> Layout:
    return load_layout(state.layout_source).with_port_offset(state.port_offset)


def _records(layout: Layout, directory: Path, port_offset: int, durability: str,
             extra_args: list[str], views: dict[str, Path] | None = None) -> dict[str, ProcessRecord]:
    """The processes of ``layout``; with ``views`` (room -> a view of the layout with final ports,
    ``dr.fabric``) each broker reads its room's view."""
    source = str(Path(layout.source).resolve())  # brokers run in their own working directories
    secret_args = ["--cluster-secret-file", str(create_secret_file(directory))]
    records = {
        "namesrv": ProcessRecord(
            name="namesrv", kind="namesrv", host=layout.namesrv_host, room=layout.room_of(layout.namesrv_host),
            addr=layout.namesrv_addr, workdir=str(directory / "namesrv"),
            argv=python_argv(NAMESRV_MODULE, "--listen", layout.namesrv_addr, *secret_args)),
    }
    for instance in layout.instances:
        workdir = directory / instance.group / instance.replica_id
        layout_args = ["--layout", str(views[instance.room]), "--port-offset", "0"] if views else \
            ["--layout", source, "--port-offset", str(port_offset)]
        records[instance.name] = ProcessRecord(
            name=instance.name, kind="broker", host=instance.host, room=instance.room, addr=instance.addr,
            workdir=str(workdir),
            argv=python_argv(BROKER_MODULE, *layout_args,
                             "--instance", instance.name, "--store", str(workdir / "store"),
                             "--durability", durability, *secret_args, *extra_args))
    return records


def up(layout_name: str, directory: Path, *, port_offset: int = 0, durability: str = "memory",
       wait_s: float = 60.0, extra_args: list[str] | None = None, acl_file: str | Path | None = None,
       die_with_parent: bool = False, placer=None, room_views=None) -> ClusterState:
    """Start every process of the layout and wait until each group has a routed leader.

    ``acl_file``: RocketMQ's plain_acl.yml, checked by every broker (``--acl``); the launcher's own
    requests are then signed with the cluster secret (``cluster_credentials``).
    ``die_with_parent``: every process ends when this process ends, however it ends, and the folder
    records this process as its owner (``mqbench.cluster.owners``); ``down`` releases it.
    ``placer``: places the layout's hosts elsewhere (``mqbench.ray.hosts.RayPlacer``):
    ``placer.place(layout, directory, port_offset)`` returns the layout with its hosts' real addresses (written
    to ``DIR/layout.json``), what runs the processes there, and the settings recorded in
    ``cluster.json``; it checks the ports on the nodes. Without one, every host must be a
    loopback address of this machine and its ports free here. ``room_views`` (with a placer: a DR
    drill's rooms, ``mqbench.ray.links``): ``room_views(placed layout, directory, hosts)`` runs once
    the hosts are placed and before any process starts, and returns room -> the view of the layout
    that room's brokers read.

    Raises ``UserError`` for an unknown layout, a busy port, a directory whose cluster still runs,
    or when no leader is routed within ``wait_s`` (then every process started here is stopped).
    """
    if durability not in ("memory", "fsync"):
        raise UserError(f"durability {durability!r} is not one of memory, fsync")
    layout = load_layout(layout_name).with_port_offset(port_offset)
    if placer is None:
        check_loopback(layout)
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "cluster.json").exists():
        existing = ClusterState.load(directory)
        records = list(existing.processes.values())
        states = existing.hosts().states(records) if existing.settings.get("ray", {}).get("detached") or \
            not existing.settings.get("ray") else {}
        running = [name for name, state in states.items() if state != "down"]
        if running:
            raise UserError(f"a cluster is already running in {directory} ({', '.join(running)}); "
                            f"`mqbench cluster down --dir {directory}` first")
    settings = {"durability": durability, "extra_args": extra_args or []}
    broker_args = list(extra_args or [])
    if acl_file is not None:
        acl_path = Path(acl_file).resolve()
        load_acl_file(acl_path)          # a bad file is the user's error now, not a broker that dies later
        broker_args += ["--acl", str(acl_path)]
        settings["acl"] = str(acl_path)
    hosts = LOCAL
    if placer is None:
        check_ports_free(layout)
    else:
        placed, hosts, placed_settings = placer.place(load_layout(layout_name), directory, port_offset)
        layout = placed.with_port_offset(port_offset)
        settings.update(placed_settings)
    views = None
    if room_views is not None and placer is not None:
        try:
            views = room_views(layout, directory, hosts)
        except BaseException:
            hosts.forget()
            raise
    records = _records(layout, directory, port_offset, durability, broker_args, views)
    state = ClusterState(directory=directory, layout_source=str(Path(layout.source).resolve()),
                         layout_name=layout.name, port_offset=port_offset, settings=settings, processes=records)
    lifeline = None
    if die_with_parent:
        state.settings.update(owner_settings())
        lifeline = lifeline_for(directory)
    deadline = time.monotonic() + wait_s
    try:
        state.save()
        hosts.spawn(records["namesrv"], lifeline=lifeline)
        state.save()
        wait_listening(state, records["namesrv"], deadline, wait_s)
        for record in records.values():
            if record.kind == "broker":
                hosts.spawn(record, lifeline=lifeline)
        state.save()
        wait_for_leaders(state, max(deadline - time.monotonic(), 0.5))
        wait_for_preferred_leaders(state, min(PREFERRED_WAIT_S, max(deadline - time.monotonic(), 0.0)))
    except BaseException:  # UserError, or ^C while waiting: leave nothing running behind
        hosts.stop(list(state.processes.values()), timeout_s=5)
        hosts.forget()
        release(directory)
        raise
    return state


def check_loopback(layout: Layout) -> None:
    """``UserError`` unless every host of ``layout`` is a loopback address: processes started on
    this machine listen there only; a layout naming real node addresses runs on a Ray cluster."""
    import ipaddress

    for host in layout.ray_nodes:
        raise UserError(f"layout {layout.name}: host {host} names a Ray node (ray_node); place it with "
                        "--cluster ray://HEAD:10001")
    for host, address in layout.hosts.items():
        if not ipaddress.ip_address(address).is_loopback:
            raise UserError(f"layout {layout.name}: host {host} has the node address {address}, which is not a "
                            "loopback address of this machine; place it on its Ray node with --cluster ray://HEAD:10001")


def check_ports_free(layout: Layout) -> None:
    """Raise ``UserError`` naming the first port of ``layout`` that something already listens on.

    The probe binds with SO_REUSEADDR, as the servers do, so only a listener (not a TIME_WAIT
    leftover of an earlier run) counts as busy.
    """
    check_addresses_free(wanted_ports(layout))


def wanted_ports(layout: Layout, host: str | None = None) -> list[tuple[str, int, str]]:
    """(address, port, what) of every server of ``layout`` (of ``host`` only, when given)."""
    wanted = [(layout.hosts[layout.namesrv_host], layout.namesrv_port, "the name server")] \
        if host in (None, layout.namesrv_host) else []
    for instance in layout.instances:
        if host in (None, instance.host):
            wanted.append((instance.address, instance.port, f"{instance.name} (clients)"))
            wanted.append((instance.address, instance.raft_port, f"{instance.name} (Raft peers)"))
            wanted.append((instance.address, instance.grpc_port, f"{instance.name} (gRPC clients)"))
    return wanted


def check_addresses_free(wanted: list[tuple[str, int, str]]) -> None:
    """``check_ports_free`` for a list of (address, port, what)."""
    for address, port, what in wanted:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise UserError(f"port {address}:{port} for {what} is busy; stop what listens there or "
                                    "choose another --port-offset") from None
                raise UserError(f"cannot bind {address}:{port} for {what}: {exc.strerror or exc}") from None


def wait_listening(state: ClusterState, record: ProcessRecord, deadline: float, wait_s: float) -> None:
    """Block until ``record``'s address accepts TCP connections; ``UserError`` if it dies or times out."""
    host, _, port = record.addr.rpartition(":")
    hosts = state.hosts()
    while True:
        if hosts.states([record])[record.name] == "down":
            raise UserError(f"{record.name} exited while starting; last lines of {record.log_path}:\n"
                            f"{hosts.tail(record)}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise UserError(f"{record.name} does not listen on {record.addr} after {wait_s:.0f} s; "
                            f"see {record.log_path}")
        time.sleep(0.05)


def start(state: ClusterState, target: str) -> list[str]:
    """Bring back the processes named by ``target``: restart the dead ones (same store, same ports)
    and resume (SIGCONT) the stopped ones. Returns the names acted on."""
    started = []
    owned = state.settings.get("owner_pid") == os.getpid()
    hosts = state.hosts()
    records = state.select(target)
    states = hosts.states(records)
    for record in records:
        if states[record.name] == "down":
            hosts.spawn(record, lifeline=lifeline_for(state.directory) if owned else None)
            started.append(record.name)
        elif states[record.name] == "stopped":
            hosts.signal([record], signal.SIGCONT)
            started.append(record.name)
    state.save()
    return started


KILL_WAIT_S = 5.0   # how long a SIGKILLed process may take to be gone, twice (see ``kill``)


def kill(state: ClusterState, target: str, sig: int = signal.SIGKILL, wait_s: float = KILL_WAIT_S) -> list[str]:
    """Send ``sig`` (SIGKILL by default) to the processes named by ``target``; the names hit.

    After SIGKILL it waits (up to ``wait_s``) until they are gone, so a following ``start`` can bind
    their ports and lock their stores again. One still alive then gets SIGKILL once more and
    ``wait_s`` more; one alive after that raises ``ProcessStillAlive`` naming it and its pid (a
    thread stuck in the kernel, e.g. an fsync on a loaded disk, still holds its store and ports:
    never left behind silently). After SIGSTOP it waits (up to 2 s) until they show as stopped."""
    records = state.select(target)
    hosts = state.hosts()
    hit = hosts.signal(records, sig)
    if sig == signal.SIGKILL:
        left = hosts.wait_gone([r for r in records if r.name in hit], wait_s)
        if left:
            hosts.signal(left, signal.SIGKILL)
            left = hosts.wait_gone(left, wait_s)
        if left:
            raise ProcessStillAlive(left, 2 * wait_s)
    elif sig == signal.SIGSTOP:  # the kernel stops a process asynchronously: report it once it is
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and "running" in hosts.states([r for r in records if r.name in hit]).values():
            time.sleep(0.01)
    return hit


def down(state: ClusterState, timeout_s: float = 10.0, keep_stores: bool = False) -> dict[str, str]:
    """Clean stop of every process, SIGKILL after ``timeout_s``; name -> how it ended.

    SIGSTOPped processes are resumed first, or they could not act on SIGTERM. On Ray nodes the
    brokers' stores are removed from the nodes' disks too (unless ``keep_stores``: they stay there,
    at each record's ``workdir/store``), and the host actors end; a local cluster keeps its stores."""
    hosts = state.hosts()
    records = list(state.processes.values())
    stopped = [r for r in records if hosts.states([r])[r.name] == "stopped"]
    if stopped:
        hosts.signal(stopped, signal.SIGCONT)
    brokers = [r for r in records if r.kind == "broker"]
    outcome = hosts.stop(brokers, timeout_s)
    outcome.update(hosts.stop([r for r in records if r.kind == "namesrv"], timeout_s))
    if not keep_stores:
        hosts.remove_stores(brokers)
    hosts.forget()
    release(state.directory)
    return outcome


def status(state: ClusterState, timeout_s: float = 2.0) -> list[InstanceStatus]:
    """Role of every instance, asked over the remoting protocol (GET_BROKER_RUNTIME_INFO)."""
    return asyncio.run(status_async(state, timeout_s))


async def status_async(state: ClusterState, timeout_s: float = 2.0) -> list[InstanceStatus]:
    """``status`` for callers already inside an event loop (drills, soak, benchmarks)."""
    from mqbench.admin.calls import query_runtime_info

    layout = cluster_layout(state)
    credentials = cluster_credentials(state)
    missing = [i.name for i in layout.instances if i.name not in state.processes]
    if missing:
        raise UserError(f"{state.directory / 'cluster.json'} records no process for {missing[0]}; "
                        "was the layout file changed after `cluster up`?")
    hosts = state.hosts()    # connects, if it must, on this thread (Ray's signal handlers want the main one)
    states = await asyncio.to_thread(hosts.states, [state.processes[i.name] for i in layout.instances])

    async def one(instance) -> InstanceStatus:
        record = state.processes[instance.name]
        process = states[instance.name]
        result = InstanceStatus(name=instance.name, group=instance.group, replica_id=instance.replica_id,
                                host=instance.host, room=instance.room, addr=instance.addr,
                                process=process, role="down", pid=record.pid if process != "down" else None)
        if process == "down":
            return result
        if process == "stopped":
            result.role = "stopped"
            return result
        try:
            info = await query_runtime_info(instance.addr, timeout_s, credentials=credentials)
        except Exception:  # refused, reset, timed out: the table says unreachable
            result.role = "unreachable"
            return result
        result.role = info.get("raftRole", "unknown")
        result.term = int(info["raftTerm"]) if "raftTerm" in info else None
        result.leader_id = info.get("raftLeaderId") or None
        if info.get("raftCommitIndex", "").lstrip("-").isdigit():
            result.commit_index = int(info["raftCommitIndex"])
        return result

    return list(await asyncio.gather(*(one(i) for i in layout.instances)))


def wait_for_leaders(state: ClusterState, wait_s: float) -> list[InstanceStatus]:
    """Block until every group has a live leader that answers and that the name server routes to
    (brokerId 0 of its broker name); raise ``UserError`` on timeout or when a process died."""
    deadline = time.monotonic() + wait_s
    hosts = state.hosts()
    while True:
        states = hosts.states(list(state.processes.values()))
        dead = [r for r in state.processes.values() if states[r.name] == "down"]
        if dead:
            record = dead[0]
            raise UserError(f"{record.name} exited while starting; last lines of {record.log_path}:\n"
                            f"{hosts.tail(record)}")
        rows = status(state, timeout_s=1.0)
        groups = {r.group for r in rows}
        leaders = {r.group: r.addr for r in rows if r.role == "leader"}
        routed = namesrv_masters(state) if set(leaders) == groups else {}
        if leaders and all(routed.get(g) == leaders.get(g) for g in groups):
            return rows
        if time.monotonic() > deadline:
            missing = sorted(groups - set(leaders))
            if missing:
                raise UserError(f"no leader elected within {wait_s:.0f} s for group(s) {', '.join(missing)}; "
                                f"logs are in {state.directory}")
            unrouted = sorted(g for g in groups if routed.get(g) != leaders[g])
            raise UserError(f"the name server does not route to the leader of {', '.join(unrouted)} after "
                            f"{wait_s:.0f} s (leaders do not register?); logs are in {state.directory}")
        time.sleep(0.2)


def wait_for_preferred_leaders(state: ClusterState, wait_s: float) -> bool:
    """Wait up to ``wait_s`` until every group with a preferred leader is led from it and routed
    there, so ``up`` hands over a cluster whose leaders will not move right away. Returns whether
    that happened; a group whose preferred replica does not take over is not an error."""
    layout = cluster_layout(state)
    wanted = {i.group: i.addr for i in layout.instances if i.preferred_leader}
    deadline = time.monotonic() + wait_s
    while True:
        rows = status(state, timeout_s=1.0)
        leaders = {r.group: r.addr for r in rows if r.role == "leader"}
        if all(leaders.get(g) == a for g, a in wanted.items()):
            routed = namesrv_masters(state)
            if all(routed.get(g) == a for g, a in wanted.items()):
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def namesrv_masters(state: ClusterState, timeout_s: float = 1.0) -> dict[str, str]:
    """Broker name -> the address the name server routes writes to (brokerId 0); {} if it does not answer."""
    return asyncio.run(_namesrv_masters(cluster_layout(state).namesrv_addr, timeout_s))


async def _namesrv_masters(addr: str, timeout_s: float) -> dict[str, str]:
    from mqbench.broker.formats import codes
    from mqbench.broker.formats.admin_bodies import parse_cluster_info
    from mqbench.broker.remoting.client import connect
    from mqbench.broker.formats.command import RemotingCommand
    from mqbench.errors import MqbenchError

    try:
        channel = await connect(addr, timeout_ms=int(timeout_s * 1000))
    except (MqbenchError, OSError):
        return {}
    try:
        response = await channel.request(RemotingCommand.request(codes.GET_BROKER_CLUSTER_INFO),
                                         int(timeout_s * 1000))
        if response.code != codes.SUCCESS:
            return {}
        brokers = parse_cluster_info(response.body)
    except (MqbenchError, OSError):
        return {}
    finally:
        await channel.aclose()
    return {b.broker_name: b.addrs.get(0, "") for b in brokers}


def leader(state: ClusterState, group: str, timeout_s: float = 2.0) -> InstanceStatus:
    """The instance that leads ``group`` (the highest term if two claim it); ``UserError`` for an
    unknown group or when no live instance leads it."""
    layout = cluster_layout(state)
    if group not in layout.groups:
        raise UserError(f"layout {layout.name!r} has no group {group!r}; groups: {', '.join(layout.groups)}")
    rows = [r for r in status(state, timeout_s) if r.group == group and r.role == "leader"]
    if not rows:
        raise UserError(f"group {group!r} has no leader right now (an election may be under way)")
    return max(rows, key=lambda r: r.term or 0)
