"""``mqbench cluster``: a reference cluster to use by hand, and the drills that break it.

    mqbench cluster up --layout raft3 [--dir D] [--durability memory|fsync] [--port-offset N] [--wait S] [--acl FILE]
                       [--cluster ray://HEAD:10001 [--ray-head-workers]]
    mqbench cluster status [--dir D] [--json]
    mqbench cluster kill TARGET [--signal KILL|TERM|STOP|CONT]
    mqbench cluster start TARGET
    mqbench cluster leader GROUP [--json]
    mqbench cluster down [--dir D] [--timeout S]

The processes outlive the command (each runs in its own session); ``DIR/cluster.json`` records them
so the later commands find them. With ``--cluster`` each host runs on a Ray node of its own, under a
detached named actor that the later commands reach through Ray (``mqbench.ray.hosts``). The work is in ``mqbench.cluster.launcher``; this module only
parses flags and prints.
"""
from __future__ import annotations

import signal
from pathlib import Path

import click

from mqbench.cli.options import json_option, ray_address, ray_head_workers_option
from mqbench.output import document, print_json, table

STATUS_SCHEMA = "mqbench.cluster-status/1"
LEADER_SCHEMA = "mqbench.cluster-leader/1"
ACTION_SCHEMA = "mqbench.cluster-action/1"
DEFAULT_DIR = Path(".mqbench") / "cluster"
STALE_ROOT = Path("results") / ".work"   # where `mqbench run` (default --out) puts its clusters
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP, "CONT": signal.SIGCONT}

dir_option = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
                          show_default=True, help="The cluster's directory (stores, logs, cluster.json).")


@click.group()
def cluster() -> None:
    """Start, inspect, break and stop a reference Raft cluster laid out by a layout."""


def _status_rows(state) -> list:
    from mqbench.cluster.launcher import status

    return status(state)


def _namesrv_running(state) -> bool:
    namesrv = state.processes["namesrv"]
    return state.hosts().states([namesrv])[namesrv.name] != "down"


def _nodes(state) -> dict:
    """host -> its Ray node ("hostname/ip"), for a cluster placed on Ray nodes; else {}."""
    return {host: where["node"] for host, where in (state.settings.get("ray") or {}).get("hosts", {}).items()}


def _status_doc(state, rows) -> dict:
    ray = state.settings.get("ray")
    return document(STATUS_SCHEMA, directory=str(state.directory), layout=state.layout_name,
                    port_offset=state.port_offset, durability=state.settings.get("durability"),
                    namesrv_addr=state.processes["namesrv"].addr,
                    namesrv_running=_namesrv_running(state),
                    ray=None if not ray else {"address": ray["address"], "detached": ray["detached"],
                                              "nodes": _nodes(state)},
                    grpc_addrs=_grpc_addrs(state),
                    instances=[{"instance": r.name, "group": r.group, "replica": r.replica_id, "host": r.host,
                                "room": r.room, "role": r.role, "term": r.term, "leader": r.leader_id,
                                "commit_index": r.commit_index, "address": r.addr, "pid": r.pid,
                                "process": r.process} for r in rows])


def _print_status(state, rows, as_json: bool) -> None:
    if as_json:
        print_json(_status_doc(state, rows))
        return
    namesrv = state.processes["namesrv"]
    click.echo(f"layout {state.layout_name}, name server {namesrv.addr} "
               f"({'running' if _namesrv_running(state) else 'down'}), directory {state.directory}")
    nodes = _nodes(state)
    if nodes:
        click.echo(f"on the Ray cluster {state.settings['ray']['address']}")
    click.echo(table([[r.group, r.replica_id, r.host, r.room, *([nodes.get(r.host)] if nodes else []), r.role, r.term,
                       r.addr, r.pid] for r in rows],
                     ["group", "replica", "host", "room", *(["ray node"] if nodes else []), "role", "term", "address",
                      "pid"]))
    click.echo(_grpc_line(state))


def _grpc_addrs(state) -> list[str]:
    from mqbench.cluster.launcher import cluster_layout

    return [i.grpc_addr for i in cluster_layout(state).instances]


def _grpc_line(state) -> str:
    """Where RocketMQ 5 (gRPC) clients connect, or why there is no such port."""
    from mqbench.broker.grpc import stubs

    if stubs.load() is None:
        return f"gRPC endpoint: off (the grpc extra is not installed: {stubs.EXTRA_HINT})"
    return "gRPC endpoint (RocketMQ 5 clients' endpoints): " + ";".join(_grpc_addrs(state))


@cluster.command()
@click.option("--layout", "layout_name", required=True, help="A built-in layout (single, raft3, 3x3) or a .toml file.")
@dir_option
@click.option("--durability", type=click.Choice(["memory", "fsync"]), default="memory", show_default=True,
              help="When a send is acknowledged: a majority holds it in memory, or a majority fsynced it.")
@click.option("--port-offset", type=click.IntRange(0, 50_000), default=0, show_default=True,
              help="Move every port of the layout by this much (to run beside another cluster).")
@click.option("--netns", is_flag=True, help="Run each host in its own network namespace (root only; not built yet).")
@click.option("--wait", "wait_s", type=click.FloatRange(1, 600), default=60, show_default=True,
              help="Seconds to wait for every group to elect a leader the name server routes to.")
@click.option("--acl", "acl_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="RocketMQ's plain_acl.yml: every broker checks client requests against its accounts "
                   "(accessKey/secretKey, topic and group permissions). Default: no ACL.")
@click.option("--cluster", "ray_cluster", default=None, metavar="ray://HEAD:10001",
              help="Place each host of the layout on a Ray node of its own (STRICT_SPREAD; a host whose address "
                   "is a node's IP goes to that node), listening on its node's address; stores on the nodes' "
                   "disks. The later status/kill/start/leader/down commands reach the processes through the hosts' "
                   "detached Ray actors (found by name); down also removes the stores on the nodes. Needs "
                   "`pip install 'mqbench[ray]'`, and this machine must reach the nodes' addresses.")
@ray_head_workers_option
@json_option
def up(layout_name: str, directory: Path, durability: str, port_offset: int, netns: bool, wait_s: float,
       acl_file: Path | None, ray_cluster: str | None, ray_head_workers: bool, as_json: bool) -> None:
    """Start the name server and every broker instance of a layout, wait for leaders, print the cluster.

    With the grpc extra (pip install 'mqbench[grpc]') every broker also serves RocketMQ 5 gRPC
    clients on its client port + 2; the last line lists those endpoints (give them to a 5.x
    client as its endpoints, ';'-separated)."""
    from mqbench.cluster.launcher import up as launch
    from mqbench.errors import UserError

    if netns:
        raise UserError("--netns is not available in this version: every host runs on its own loopback address "
                        "instead (drop --netns)")
    placer = None
    address = ray_address(ray_cluster, ray_head_workers, offers_mode=False)
    if address is not None:
        from mqbench.ray.engine import RayEngine, RayOptions

        placer = RayEngine(RayOptions(address=address, head_workers=ray_head_workers)).host_placer(detached=True)
    state = launch(layout_name, directory, port_offset=port_offset, durability=durability, wait_s=wait_s,
                   acl_file=acl_file, placer=placer)
    _print_status(state, _status_rows(state), as_json)


@cluster.command()
@dir_option
@json_option
def status(directory: Path, as_json: bool) -> None:
    """Role, term, address and pid of every instance (asked over the wire, GET_BROKER_RUNTIME_INFO)."""
    from mqbench.cluster.processes import ClusterState

    state = ClusterState.load(directory)
    _print_status(state, _status_rows(state), as_json)


@cluster.command()
@dir_option
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, 600), default=10, show_default=True,
              help="Seconds to wait for a clean stop (SIGTERM) before SIGKILL.")
@click.option("--all-stale", is_flag=True,
              help="Instead of --dir: stop and delete every embedded cluster under --under whose mqbench "
                   "command is gone (the .work stores of a killed `mqbench run`), and the temp-directory "
                   "folders of killed `mqbench dr` drills.")
@click.option("--under", "under", type=click.Path(file_okay=False, path_type=Path), default=STALE_ROOT,
              show_default=True, help="With --all-stale: the folder holding the clusters (`mqbench run --out` + /.work).")
@click.option("--keep-stores", is_flag=True,
              help="On Ray nodes: leave the brokers' stores on the nodes' disks (at the same paths as on "
                   "this machine: DIR/<group>/<replica>/store). A local cluster always keeps them.")
@json_option
def down(directory: Path, timeout_s: float, all_stale: bool, under: Path, keep_stores: bool, as_json: bool) -> None:
    """Stop every process of the cluster (SIGTERM, SIGKILL after --timeout). Stores are kept.

    A cluster on Ray nodes (`up --cluster`): its processes are stopped through their hosts' actors,
    the stores on the nodes' disks are removed (unless --keep-stores), and the actors end.

    With --all-stale: the leftovers of embedded clusters whose command was killed are stopped and
    their folders deleted (a running command's clusters are left alone).
    """
    from mqbench.cluster.launcher import down as stop_all
    from mqbench.cluster.processes import ClusterState

    if all_stale:
        from mqbench.cluster.owners import remove_stale

        from mqbench.cluster.owners import remove_stale_scratch

        removed = remove_stale(under) + remove_stale_scratch()
        if as_json:
            print_json(document(ACTION_SCHEMA, action="down-all-stale", directory=str(under),
                                removed=[str(p) for p in removed]))
        else:
            click.echo(f"removed {len(removed)} stale cluster folder(s)"
                       + "".join(f"\n  {p}" for p in removed))
        return
    state = ClusterState.load(directory)
    outcome = stop_all(state, timeout_s, keep_stores=keep_stores)
    if as_json:
        print_json(document(ACTION_SCHEMA, action="down", directory=str(state.directory),
                            processes=[{"process": n, "outcome": o} for n, o in sorted(outcome.items())]))
        return
    click.echo(table(sorted(outcome.items()), ["process", "outcome"]))


@cluster.command()
@click.argument("target")
@dir_option
@click.option("--signal", "signal_name", type=click.Choice(sorted(SIGNALS), case_sensitive=False), default="KILL",
              show_default=True, help="KILL (crash), TERM (clean stop), STOP (freeze), CONT (resume).")
@json_option
def kill(target: str, directory: Path, signal_name: str, as_json: bool) -> None:
    """Signal an INSTANCE (group/nK), a HOST, a ROOM, a GROUP, 'namesrv' or 'all', for drills.

    A host, room or group means its broker instances; the name server is only hit by name or 'all'.
    KILL returns once they are gone; one still alive 10 s after it (a thread stuck in the kernel still
    holds its store and ports) is an error naming its pid (exit code 1).
    """
    from mqbench.cluster.launcher import kill as signal_targets
    from mqbench.cluster.processes import ClusterState

    state = ClusterState.load(directory)
    hit = signal_targets(state, target, SIGNALS[signal_name.upper()])
    if as_json:
        print_json(document(ACTION_SCHEMA, action=f"kill-{signal_name.upper()}", target=target, processes=hit))
        return
    click.echo(f"sent SIG{signal_name.upper()} to {', '.join(hit)}" if hit else
               f"nothing of {target!r} was running")


@cluster.command()
@click.argument("target")
@dir_option
@json_option
def start(target: str, directory: Path, as_json: bool) -> None:
    """Bring TARGET's processes back: restart killed ones (same store, same ports), resume stopped ones."""
    from mqbench.cluster.launcher import start as bring_back
    from mqbench.cluster.processes import ClusterState

    state = ClusterState.load(directory)
    started = bring_back(state, target)
    if as_json:
        print_json(document(ACTION_SCHEMA, action="start", target=target, processes=started))
        return
    click.echo(f"started {', '.join(started)}" if started else f"everything of {target!r} is already running")


@cluster.command()
@click.argument("group")
@dir_option
@json_option
def leader(group: str, directory: Path, as_json: bool) -> None:
    """Print the instance that leads GROUP: its name, address, host and term."""
    from mqbench.cluster.launcher import leader as find_leader
    from mqbench.cluster.processes import ClusterState

    state = ClusterState.load(directory)
    row = find_leader(state, group)
    if as_json:
        print_json(document(LEADER_SCHEMA, group=group, instance=row.name, address=row.addr, host=row.host,
                            room=row.room, term=row.term, pid=row.pid))
        return
    click.echo(f"{row.name} {row.addr} host={row.host} room={row.room} term={row.term}")
