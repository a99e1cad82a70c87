"""A reference cluster whose rooms talk through the DR fabric: the launcher's processes, each broker
reading its room's view of the layout (``fabric.write_views``), plus the fabric's delay proxies.

``up(layout, directory)`` starts the fabric, the name server and every broker (as
``mqbench.cluster.launcher.up`` does, with the same ``cluster.json`` state, so ``launcher.kill``,
``launcher.start``, ``launcher.status_async`` and ``mqbench cluster status --dir`` work on it) and
waits until every group has a routed leader. ``down(cluster)`` stops the processes, then the
fabric. On any failure while starting, everything started here is stopped again.

``up(..., placer=...)`` (a ``RayEngine.host_placer()``): the layout's hosts go on Ray nodes through
``launcher.up`` itself (the one placement path of ``mqbench run`` and ``mqbench cluster up``), each
host listening on its node's address. The fabric is then ``mqbench.ray.links.NodeLinks``: the same
views, and the inter-room proxies run in the host actors on the nodes (no delay added: the real
network between the nodes is the link), so a partition is cut on the machines the traffic leaves
from; kills and restarts go through the hosts' node actors (``state.hosts()``), as for any placed
cluster.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING
from dataclasses import dataclass
from pathlib import Path

from mqbench.broker.cluster_secret import create_secret_file
from mqbench.broker.layout import Layout, load_layout
from mqbench.cluster import launcher
from mqbench.cluster.owners import lifeline_for, owner_settings, release
from mqbench.cluster.processes import ClusterState, ProcessRecord, python_argv, spawn, stop
from mqbench.dr.fabric import ProxyFabric, write_views
from mqbench.errors import UserError

if TYPE_CHECKING:
    from mqbench.ray.links import NodeLinks


@dataclass
class DrCluster:
    layout: Layout
    state: ClusterState
    fabric: ProxyFabric | NodeLinks    # on Ray nodes: the proxies in the host actors (``ray.links``)
    on_ray: bool = False

    @property
    def namesrv_addr(self) -> str:
        return self.layout.namesrv_addr


def up(layout_name: str | Path, directory: Path, *, port_offset: int = 0, durability: str = "memory",
       wait_s: float = 60.0, seed: int | str = 0, die_with_parent: bool = True, placer=None) -> DrCluster:
    """Start fabric, name server and brokers; wait for routed leaders (module docstring). With
    ``placer`` the hosts run on Ray nodes, their room links in their node actors."""
    if placer is not None:
        from mqbench.ray.links import room_views_hook

        made: dict = {}
        state = launcher.up(str(layout_name), Path(directory), port_offset=port_offset, durability=durability,
                            wait_s=wait_s, die_with_parent=die_with_parent, placer=placer,
                            room_views=room_views_hook(seed, made))
        return DrCluster(launcher.cluster_layout(state), state, made["links"], on_ray=True)
    layout = load_layout(layout_name).with_port_offset(port_offset)
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "cluster.json").exists():
        running = [r.name for r in ClusterState.load(directory).processes.values() if r.alive()]
        if running:
            raise UserError(f"a cluster is already running in {directory} ({', '.join(running)})")
    launcher.check_ports_free(layout)
    views = write_views(layout, directory / "views")
    secret_args = ["--cluster-secret-file", str(create_secret_file(directory))]
    records = {"namesrv": ProcessRecord(
        name="namesrv", kind="namesrv", host=layout.namesrv_host, room=layout.room_of(layout.namesrv_host),
        addr=layout.namesrv_addr, workdir=str(directory / "namesrv"),
        argv=python_argv(launcher.NAMESRV_MODULE, "--listen", layout.namesrv_addr, *secret_args))}
    for instance in layout.instances:
        workdir = directory / instance.group / instance.replica_id
        records[instance.name] = ProcessRecord(
            name=instance.name, kind="broker", host=instance.host, room=instance.room, addr=instance.addr,
            workdir=str(workdir),
            argv=python_argv(launcher.BROKER_MODULE, "--layout", str(views[instance.room]), "--port-offset", "0",
                             "--instance", instance.name, "--store", str(workdir / "store"),
                             "--durability", durability, *secret_args))
    state = ClusterState(directory=directory, layout_source=str(Path(layout.source).resolve()),
                         layout_name=layout.name, port_offset=port_offset,
                         settings={"durability": durability, "dr_views": {r: str(p) for r, p in views.items()}},
                         processes=records)
    lifeline = None
    if die_with_parent:     # a drill's cluster ends with the drill, however the drill ends
        state.settings.update(owner_settings())
        lifeline = lifeline_for(directory)
    fabric = ProxyFabric(layout, seed=seed).start()
    deadline = time.monotonic() + wait_s
    try:
        spawn(records["namesrv"], lifeline=lifeline)
        state.save()
        launcher.wait_listening(state, records["namesrv"], deadline, wait_s)
        for record in records.values():
            if record.kind == "broker":
                spawn(record, lifeline=lifeline)
        state.save()
        launcher.wait_for_leaders(state, max(deadline - time.monotonic(), 0.5))
    except BaseException:
        stop(list(state.processes.values()), timeout_s=5)
        release(directory)
        fabric.close()
        raise
    return DrCluster(layout, state, fabric)


def down(cluster: DrCluster, timeout_s: float = 10.0) -> dict[str, str]:
    """Clean stop of every process (SIGKILL after ``timeout_s``), then the fabric. On Ray nodes
    (``launcher.down``) the stores on the nodes go too, and the host actors end (their proxies too)."""
    try:
        cluster.fabric.heal()  # a partitioned broker must reach the name server to unregister
        return launcher.down(cluster.state, timeout_s)
    finally:
        cluster.fabric.close()
