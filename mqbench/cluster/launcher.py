"""Start, inspect and stop a reference cluster laid out by a layout file.

``up`` starts the name server and every broker instance of the layout as real OS processes (see
``processes``), then waits until every group has a leader that answers. ``status`` asks every
instance for its role. ``kill`` SIGKILLs an instance, a host (all its instances), a room or a
group, for drills; ``start`` brings killed processes back with the same store.

The broker instance process is ``python -m mqbench.broker.server.main``; it reads the same layout
file, so every process agrees on addresses, peers and preferred leaders.
"""
from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from mqbench.broker.layout import Layout, load_layout
from mqbench.cluster.processes import ClusterState, ProcessRecord, python_argv, send_signal, spawn, stop, tail
from mqbench.errors import UserError

BROKER_MODULE = "mqbench.broker.server.main"
NAMESRV_MODULE = "mqbench.broker.namesrv"


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


def cluster_layout(state: ClusterState) -> Layout:
    return load_layout(state.layout_source).with_port_offset(state.port_offset)


def _records(layout: Layout, directory: Path, port_offset: int, durability: str,
             extra_args: list[str]) -> dict[str, ProcessRecord]:
    source = layout.source
    records = {
        "namesrv": ProcessRecord(
            name="namesrv", kind="namesrv", host=layout.namesrv_host, room=layout.room_of(layout.namesrv_host),
            addr=layout.namesrv_addr, workdir=str(directory / "namesrv"),
            argv=python_argv(NAMESRV_MODULE, "--listen", layout.namesrv_addr)),
    }
    for instance in layout.instances:
        workdir = directory / instance.group / instance.replica_id
        records[instance.name] = ProcessRecord(
            name=instance.name, kind="broker", host=instance.host, room=instance.room, addr=instance.addr,
            workdir=str(workdir),
            argv=python_argv(BROKER_MODULE, "--layout", source, "--port-offset", str(port_offset),
                             "--instance", instance.name, "--store", str(workdir / "store"),
                             "--durability", durability, *extra_args))
    return records


def up(layout_name: str, directory: Path, *, port_offset: int = 0, durability: str = "memory",
       wait_s: float = 60.0, extra_args: list[str] | None = None) -> ClusterState:
    """Start every process of the layout and wait until each group has a leader."""
    layout = load_layout(layout_name).with_port_offset(port_offset)
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "cluster.json").exists():
        existing = ClusterState.load(directory)
        if any(r.alive() for r in existing.processes.values()):
            raise UserError(f"a cluster is already running in {directory}; `mqbench cluster down --dir {directory}` first")
    records = _records(layout, directory, port_offset, durability, list(extra_args or []))
    state = ClusterState(directory=directory, layout_source=layout.source, layout_name=layout.name,
                         port_offset=port_offset, settings={"durability": durability, "extra_args": extra_args or []},
                         processes=records)
    spawn(records["namesrv"])
    state.save()
    for record in records.values():
        if record.kind == "broker":
            spawn(record)
    state.save()
    try:
        wait_for_leaders(state, wait_s)
    except UserError:
        stop(list(state.processes.values()), timeout_s=5)
        raise
    return state


def start(state: ClusterState, target: str) -> list[str]:
    """Restart the processes named by ``target`` that are not running (same store, same ports)."""
    started = []
    for record in state.select(target):
        if not record.alive():
            spawn(record)
            started.append(record.name)
    state.save()
    return started


def kill(state: ClusterState, target: str, sig: int = signal.SIGKILL) -> list[str]:
    """Send ``sig`` (SIGKILL by default) to the processes named by ``target``."""
    return send_signal(state.select(target), sig)


def down(state: ClusterState, timeout_s: float = 10.0) -> dict[str, str]:
    """Clean stop of every process, SIGKILL after ``timeout_s``."""
    brokers = [r for r in state.processes.values() if r.kind == "broker"]
    outcome = stop(brokers, timeout_s)
    outcome.update(stop([r for r in state.processes.values() if r.kind == "namesrv"], timeout_s))
    return outcome


def status(state: ClusterState, timeout_s: float = 2.0) -> list[InstanceStatus]:
    """Role of every instance, asked over the remoting protocol (GET_BROKER_RUNTIME_INFO)."""
    layout = cluster_layout(state)
    return asyncio.run(_status(state, layout, timeout_s))


async def _status(state: ClusterState, layout: Layout, timeout_s: float) -> list[InstanceStatus]:
    from mqbench.broker.server.admin import query_runtime_info

    async def one(instance) -> InstanceStatus:
        record = state.processes[instance.name]
        result = InstanceStatus(name=instance.name, group=instance.group, replica_id=instance.replica_id,
                                host=instance.host, room=instance.room, addr=instance.addr,
                                process="running" if record.alive() else "down", role="down")
        if result.process == "down":
            return result
        try:
            info = await query_runtime_info(instance.addr, timeout_s)
        except Exception:  # refused, reset, timed out: the table says unreachable
            result.role = "unreachable"
            return result
        result.role = info.get("raftRole", "unknown")
        result.term = int(info["raftTerm"]) if "raftTerm" in info else None
        result.leader_id = info.get("raftLeaderId") or None
        return result

    return list(await asyncio.gather(*(one(i) for i in layout.instances)))


def wait_for_leaders(state: ClusterState, wait_s: float) -> list[InstanceStatus]:
    """Block until every group has exactly one live leader that answers; raise UserError on timeout."""
    deadline = time.monotonic() + wait_s
    while True:
        dead = [r for r in state.processes.values() if not r.alive()]
        if dead:
            record = dead[0]
            raise UserError(f"{record.name} exited while starting; last lines of {record.log_path}:\n"
                            f"{tail(record.log_path)}")
        rows = status(state, timeout_s=1.0)
        groups = {r.group for r in rows}
        led = {r.group for r in rows if r.role == "leader"}
        if led == groups:
            return rows
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(groups - led))
            raise UserError(f"no leader elected within {wait_s:.0f} s for group(s) {missing}; logs are in {state.directory}")
        time.sleep(0.2)
