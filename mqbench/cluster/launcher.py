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
from mqbench.cluster.processes import (ClusterState, ProcessRecord, python_argv, send_signal, spawn, stop, tail,
                                       wait_gone)
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
             extra_args: list[str]) -> dict[str, ProcessRecord]:
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
        records[instance.name] = ProcessRecord(
            name=instance.name, kind="broker", host=instance.host, room=instance.room, addr=instance.addr,
            workdir=str(workdir),
            argv=python_argv(BROKER_MODULE, "--layout", source, "--port-offset", str(port_offset),
                             "--instance", instance.name, "--store", str(workdir / "store"),
                             "--durability", durability, *secret_args, *extra_args))
    return records


def up(layout_name: str, directory: Path, *, port_offset: int = 0, durability: str = "memory",
       wait_s: float = 60.0, extra_args: list[str] | None = None, acl_file: str | Path | None = None,
       die_with_parent: bool = False, spawner=None) -> ClusterState:
    """Start every process of the layout and wait until each group has a routed leader.

    ``acl_file``: RocketMQ's plain_acl.yml, checked by every broker (``--acl``); the launcher's own
    requests are then signed with the cluster secret (``cluster_credentials``).
    ``die_with_parent``: every process ends when this process ends, however it ends, and the folder
    records this process as its owner (``mqbench.cluster.owners``); ``down`` releases it.
    ``spawner``: what starts a process (``processes.spawn``'s signature; default that function):
    ``mqbench.ray.engine`` starts each host's brokers on its own Ray node with it.

    Raises ``UserError`` for an unknown layout, a busy port, a directory whose cluster still runs,
    or when no leader is routed within ``wait_s`` (then every process started here is stopped).
    """
    if durability not in ("memory", "fsync"):
        raise UserError(f"durability {durability!r} is not one of memory, fsync")
    layout = load_layout(layout_name).with_port_offset(port_offset)
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "cluster.json").exists():
        existing = ClusterState.load(directory)
        running = [r.name for r in existing.processes.values() if r.alive()]
        if running:
            raise UserError(f"a cluster is already running in {directory} ({', '.join(running)}); "
                            f"`mqbench cluster down --dir {directory}` first")
    check_ports_free(layout)
    broker_args = list(extra_args or [])
    settings = {"durability": durability, "extra_args": extra_args or []}
    if acl_file is not None:
        acl_path = Path(acl_file).resolve()
        load_acl_file(acl_path)          # a bad file is the user's error now, not a broker that dies later
        broker_args += ["--acl", str(acl_path)]
        settings["acl"] = str(acl_path)
    records = _records(layout, directory, port_offset, durability, broker_args)
    state = ClusterState(directory=directory, layout_source=str(Path(layout.source).resolve()),
                         layout_name=layout.name, port_offset=port_offset, settings=settings, processes=records)
    lifeline = None
    if die_with_parent:
        state.settings.update(owner_settings())
        lifeline = lifeline_for(directory)
    deadline = time.monotonic() + wait_s
    spawner = spawner or spawn
    try:
        spawner(records["namesrv"], lifeline=lifeline)
        state.save()
        wait_listening(records["namesrv"], deadline, wait_s)
        for record in records.values():
            if record.kind == "broker":
                spawner(record, lifeline=lifeline)
        state.save()
        wait_for_leaders(state, max(deadline - time.monotonic(), 0.5))
        wait_for_preferred_leaders(state, min(PREFERRED_WAIT_S, max(deadline - time.monotonic(), 0.0)))
    except BaseException:  # UserError, or ^C while waiting: leave nothing running behind
        stop(list(state.processes.values()), timeout_s=5)
        release(directory)
        raise
    return state


def check_ports_free(layout: Layout) -> None:
    """Raise ``UserError`` naming the first port of ``layout`` that something already listens on.

    The probe binds with SO_REUSEADDR, as the servers do, so only a listener (not a TIME_WAIT
    leftover of an earlier run) counts as busy.
    """
    wanted = [(layout.hosts[layout.namesrv_host], layout.namesrv_port, "the name server")]
    for instance in layout.instances:
        wanted.append((instance.address, instance.port, f"{instance.name} (clients)"))
        wanted.append((instance.address, instance.raft_port, f"{instance.name} (Raft peers)"))
        wanted.append((instance.address, instance.grpc_port, f"{instance.name} (gRPC clients)"))
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


def wait_listening(record: ProcessRecord, deadline: float, wait_s: float) -> None:
    """Block until ``record``'s address accepts TCP connections; ``UserError`` if it dies or times out."""
    host, _, port = record.addr.rpartition(":")
    while True:
        if not record.alive():
            raise UserError(f"{record.name} exited while starting; last lines of {record.log_path}:\n"
                            f"{tail(record.log_path)}")
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
    for record in state.select(target):
        proc = record.process()
        if proc is None:
            spawn(record, lifeline=lifeline_for(state.directory) if owned else None)
            started.append(record.name)
        elif _is_stopped(proc):
            proc.send_signal(signal.SIGCONT)
            started.append(record.name)
    state.save()
    return started


def _is_stopped(proc) -> bool:
    import psutil

    try:
        return proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


def kill(state: ClusterState, target: str, sig: int = signal.SIGKILL) -> list[str]:
    """Send ``sig`` (SIGKILL by default) to the processes named by ``target``.

    After SIGKILL it waits (up to 5 s) until they are gone, so a following ``start`` can bind
    their ports again; after SIGSTOP (up to 2 s) until they show as stopped."""
    records = state.select(target)
    hit = send_signal(records, sig)
    if sig == signal.SIGKILL:
        wait_gone([r for r in records if r.name in hit], 5.0)
    elif sig == signal.SIGSTOP:  # the kernel stops a process asynchronously: report it once it is
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not all(
                _is_stopped(p) for p in (r.process() for r in records if r.name in hit) if p is not None):
            time.sleep(0.01)
    return hit


def down(state: ClusterState, timeout_s: float = 10.0) -> dict[str, str]:
    """Clean stop of every process, SIGKILL after ``timeout_s``; name -> how it ended.

    SIGSTOPped processes are resumed first, or they could not act on SIGTERM."""
    for record in state.processes.values():
        proc = record.process()
        if proc is not None and _is_stopped(proc):
            proc.send_signal(signal.SIGCONT)
    brokers = [r for r in state.processes.values() if r.kind == "broker"]
    outcome = stop(brokers, timeout_s)
    outcome.update(stop([r for r in state.processes.values() if r.kind == "namesrv"], timeout_s))
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

    async def one(instance) -> InstanceStatus:
        record = state.processes.get(instance.name)
        if record is None:
            raise UserError(f"{state.directory / 'cluster.json'} records no process for {instance.name}; "
                            "was the layout file changed after `cluster up`?")
        proc = record.process()
        result = InstanceStatus(name=instance.name, group=instance.group, replica_id=instance.replica_id,
                                host=instance.host, room=instance.room, addr=instance.addr,
                                process="running" if proc is not None else "down", role="down",
                                pid=record.pid if proc is not None else None)
        if proc is None:
            return result
        if _is_stopped(proc):
            result.process = result.role = "stopped"
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
    while True:
        dead = [r for r in state.processes.values() if not r.alive()]
        if dead:
            record = dead[0]
            raise UserError(f"{record.name} exited while starting; last lines of {record.log_path}:\n"
                            f"{tail(record.log_path)}")
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
