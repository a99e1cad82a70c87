"""A layout's hosts on Ray nodes: where they go, their addresses, and their processes afterwards.

``RayPlacer(engine, detached)`` is the launcher's ``placer`` (``cluster.launcher.up``):

* **where**: a host whose layout address is not a loopback address names a node by its IP and is
  placed on that node, as is a host whose ``ray_node`` is ``id:<node id>``; the other hosts go into
  one placement group, one bundle per host, ``STRICT_SPREAD`` (each on a distinct node, never the
  head unless ``head_workers``, nor a node another host names), a host's bundle asking for
  ``mqbench_room_<room>`` when some node offers it (rooms as node resources), and, for
  ``ray_node = "label:k=v,..."``, selecting nodes with those labels (``ray start --labels``; Ray's
  bundle label selector);
* **who**: one ``agents.NodeAgent`` per host, a *named* actor (``mqbench:<cluster id>:<host>`` in
  the ``mqbench`` namespace), so a later command, another Ray driver, finds it by name. For
  ``mqbench cluster up --cluster`` the actors and the placement group are *detached* (they outlive
  the command; ``cluster down`` ends them); for ``mqbench run`` they end with the run's driver;
* **addresses**: placed hosts (all but those named by IP) listen on their node's IP when the placed
  nodes' IPs are distinct (one Ray node per machine, or local test nodes on 127.0.0.x), else (several nodes share one
  IP: one machine) on the layout's own loopback addresses. The name server runs on its host's
  node too. The placed layout is written to ``DIR/layout.json`` and shipped to the nodes with
  the cluster secret; the ports are checked on each node, not here;
* **record**: ``cluster.json``'s ``settings["ray"]``: the Ray address and namespace, the cluster
  id, detached or not, the placement group's name, and per host its actor's name, node id and IP.

``RayHosts`` is what runs the processes of such a cluster (``ClusterState.hosts()``): every check
(pid and start time), signal, start, stop, CPU reading and log tail is a call to the host's actor,
which runs ``cluster.processes``' own functions on its node. ``RayHosts.of(state)`` reconnects
from the recorded address (one connection per process). ``forget()`` ends the actors and the
placement group. UserError when an actor is gone (its node died, or the Ray cluster restarted).
"""
from __future__ import annotations

import ipaddress
import json
import secrets
import tomllib
from dataclasses import asdict
from pathlib import Path

from mqbench.errors import UserError

NAMESPACE = "mqbench"
CALL_TIMEOUT_S = 60.0
PLACED_LAYOUT = "layout.json"
_OPEN: dict[str, "RayHosts"] = {}    # cluster directory -> its hosts, in this process


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def _layout_document(source: str) -> dict:
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)


class RayHosts:
    """The processes of a cluster whose hosts are Ray node actors (module doc)."""

    remote = True

    def __init__(self, ray, directory: Path, settings: dict, actors: dict):
        self.ray, self.directory, self.settings, self.actors = ray, Path(directory), settings, actors

    @classmethod
    def of(cls, state) -> "RayHosts":
        key = str(Path(state.directory).resolve())
        if key in _OPEN:
            return _OPEN[key]
        from mqbench.ray.engine import connect

        settings = state.settings["ray"]
        ray = connect(settings["address"])
        actors = {}
        for host, where in settings["hosts"].items():
            try:
                actors[host] = ray.get_actor(where["actor"], namespace=settings.get("namespace", NAMESPACE))
            except ValueError:
                actors[host] = None     # gone: its processes are down (the lifeline ended them)
        hosts = _OPEN[key] = cls(ray, state.directory, settings, actors)
        return hosts

    # --- calls per host ------------------------------------------------------------------------

    def _call(self, records, method: str, *args) -> dict:
        """host -> the answer of its actor's ``method(docs, *args)``; None for a host whose actor is gone."""
        by_host: dict[str, list] = {}
        for record in records:
            by_host.setdefault(record.host, []).append(asdict(record))
        refs = {}
        for host, docs in by_host.items():
            actor = self.actors.get(host)
            if actor is not None:
                refs[host] = getattr(actor, method).remote(docs, *args)
        out: dict = {host: None for host in by_host}
        for host, ref in refs.items():
            try:
                out[host] = self.ray.get(ref, timeout=CALL_TIMEOUT_S)
            except self.ray.exceptions.RayActorError:   # the actor (its node) died: its processes with it
                self.actors[host] = None
            except Exception as exc:  # noqa: BLE001 - a timeout, a lost connection: one line
                raise UserError(f"host {host}'s Ray actor did not answer {method}: {exc}") from None
        return out

    def _agent(self, host: str):
        actor = self.actors.get(host)
        if actor is None:
            raise UserError(f"host {host}'s Ray actor ({self.settings['hosts'][host]['actor']}) is gone: its node "
                            "died or the Ray cluster restarted; `mqbench cluster down` and `up` again")
        return actor

    def states(self, records) -> dict[str, str]:
        out = {r.name: "down" for r in records}
        for answer in self._call(records, "process_states").values():
            out.update(answer or {})
        return out

    def spawn(self, record, lifeline=None) -> None:
        files = {}
        argv = record.argv
        for flag in ("--cluster-secret-file", "--layout"):
            if flag in argv:
                path = argv[argv.index(flag) + 1]
                files[path] = Path(path).read_bytes()
        record.pid, record.started_at_s, record.argv = self.ray.get(
            self._agent(record.host).spawn_process.remote(asdict(record), files), timeout=CALL_TIMEOUT_S)

    def signal(self, records, sig: int) -> list[str]:
        return [name for answer in self._call(records, "signal_processes", int(sig)).values() for name in answer or []]

    def wait_gone(self, records, timeout_s: float) -> list:
        left = {name for answer in self._call(records, "wait_gone", timeout_s).values() for name in answer or []}
        return [r for r in records if r.name in left]

    def stop(self, records, timeout_s: float) -> dict[str, str]:
        out = {r.name: "not running" for r in records}
        for answer in self._call(records, "stop_processes", timeout_s).values():
            out.update(answer or {})
        return out

    def cpu_s(self, records) -> dict[str, float | None]:
        out: dict[str, float | None] = {r.name: None for r in records}
        for answer in self._call(records, "cpu_s").values():
            out.update(answer or {})
        return out

    def tail(self, record, lines: int = 15) -> str:
        try:
            return self.ray.get(self._agent(record.host).tail.remote(asdict(record), lines), timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the log is on a node that no longer answers
            return f"(the log on host {record.host}'s node cannot be read: {exc})"

    def remove_stores(self, records) -> None:
        self._call(records, "remove_stores")

    def forget(self) -> None:
        """End the host actors (their processes end with them) and the placement group."""
        for actor in self.actors.values():
            if actor is not None:
                try:
                    self.ray.kill(actor)
                except Exception:  # noqa: BLE001 - gone already
                    pass
        self.actors = {host: None for host in self.actors}
        name = self.settings.get("placement_group")
        if name:
            try:
                from ray.util import get_placement_group

                self.ray.util.remove_placement_group(get_placement_group(name))
            except Exception:  # noqa: BLE001 - removed already
                pass
        _OPEN.pop(str(self.directory.resolve()), None)


class RayPlacer:
    """``launcher.up``'s placer for a layout on Ray nodes (module doc)."""

    def __init__(self, engine, detached: bool):
        self.engine, self.detached = engine, detached

    def _nodes_by_ip(self) -> dict[str, str]:
        return {n["NodeManagerAddress"]: n["NodeID"] for n in self.engine.ray.nodes() if n.get("Alive")}

    def _check_labels(self, layout, hosts: list[str]) -> None:
        """UserError naming a host whose ``ray_node`` labels no live node carries (Ray would wait)."""
        nodes = [n.get("Labels", {}) or {} for n in self.engine.ray.nodes() if n.get("Alive")]
        for host in hosts:
            wanted = dict(layout.ray_nodes[host].labels) if host in layout.ray_nodes else {}
            if wanted and not any(all(labels.get(k) == v for k, v in wanted.items()) for labels in nodes):
                raise UserError(f"layout {layout.name}: host {host} wants a Ray node labelled "
                                f"{', '.join(f'{k}={v}' for k, v in wanted.items())}, and no live node has "
                                "those labels (ray start --labels)")

    def place(self, layout, directory: Path, port_offset: int):
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

        from mqbench.cluster.launcher import wanted_ports
        from mqbench.ray.engine import HEAD_RESOURCE, PLACE_TIMEOUT_S, ROOM_RESOURCE

        engine, ray = self.engine, self.engine.ray
        cluster_id = secrets.token_hex(4)
        hosts = sorted(layout.hosts)
        pinned = {h: layout.hosts[h] for h in hosts if not _is_loopback(layout.hosts[h])}
        by_id = {h: n.node_id for h, n in layout.ray_nodes.items() if n.node_id and h not in pinned}
        spread = [h for h in hosts if h not in pinned and h not in by_id]
        by_ip = self._nodes_by_ip()
        strategies = {}
        for host, address in pinned.items():
            if address not in by_ip:
                raise UserError(f"layout {layout.name}: host {host} names the node {address}, and the Ray cluster has "
                                f"no live node with that address (its nodes: {', '.join(sorted(by_ip))})")
            strategies[host] = NodeAffinitySchedulingStrategy(by_ip[address], soft=False)
        for host, node_id in by_id.items():
            if node_id not in by_ip.values():
                raise UserError(f"layout {layout.name}: host {host} names the Ray node id {node_id}, and the Ray cluster "
                                "has no live node with that id (`ray list nodes` shows them)")
            strategies[host] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        group_name = None
        if spread:
            usable = len(engine.nodes())
            if usable < len(spread):
                raise UserError(f"layout {layout.name} has {len(spread)} hosts, each on its own node; the Ray cluster "
                                f"has {usable} nodes for them" + ("" if engine.options.head_workers else " (not the head)"))
            offered = {r for n in ray.nodes() if n.get("Alive") for r in n.get("Resources", {})}
            bundles = []
            for host in spread:
                bundle = {"CPU": 0.01}
                room = ROOM_RESOURCE + layout.room_of(host)
                if room in offered:
                    bundle[room] = 0.001
                bundles.append(bundle)
            selectors: list[dict] = [dict(layout.ray_nodes[h].labels) if h in layout.ray_nodes else {}
                                     for h in spread]
            # not the head (unless asked), nor a node a host names (by IP or id): each host on a node of its own
            avoid = sorted({by_ip[a] for a in pinned.values()} | set(by_id.values()))
            if not engine.options.head_workers:
                avoid += [n["NodeID"] for n in ray.nodes() if n.get("Alive") and HEAD_RESOURCE in n.get("Resources", {})]
            if avoid:
                for selector in selectors:
                    selector["ray.io/node-id"] = f"!in({','.join(avoid)})"
            self._check_labels(layout, spread)
            group_name = f"mqbench:{cluster_id}"
            group = placement_group(bundles, strategy="STRICT_SPREAD", name=group_name,
                                    lifetime="detached" if self.detached else None,
                                    bundle_label_selector=selectors if any(selectors) else None)
            if not self.detached:
                engine.groups.append(group)
            try:
                ray.get(group.ready(), timeout=PLACE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - GetTimeoutError: the resources are not there
                ray.util.remove_placement_group(group)
                raise UserError(f"layout {layout.name}: Ray could not place {len(spread)} hosts on distinct nodes "
                                f"within {PLACE_TIMEOUT_S:.0f} s ({type(exc).__name__})") from None
            for index, host in enumerate(spread):
                strategies[host] = PlacementGroupSchedulingStrategy(placement_group=group,
                                                                    placement_group_bundle_index=index)
        actors, where = {}, {}
        try:
            for host in hosts:
                name = f"mqbench:{cluster_id}:{host}"
                actors[host] = engine.agent_class.options(
                    num_cpus=0, max_concurrency=4, name=name, namespace=NAMESPACE, scheduling_strategy=strategies[host],
                    lifetime="detached" if self.detached else None).remote(f"host {host}")
                if not self.detached:
                    engine.actors.append(actors[host])
                info = ray.get(actors[host].info.remote(), timeout=CALL_TIMEOUT_S)
                where[host] = {"actor": name, "node_id": info["node_id"], "node_ip": info["node_ip"],
                               "node": f"{info['hostname']}/{info['node_ip']}"}
                engine.note_host(host, info, actors[host])
            moving = spread + sorted(by_id)
            placed_ips = [where[h]["node_ip"] for h in moving]
            addresses = dict(layout.hosts)
            if len(set(placed_ips)) == len(placed_ips):
                addresses.update({h: where[h]["node_ip"] for h in moving})
            document = _layout_document(layout.source)
            for host, address in addresses.items():
                document["hosts"][host]["address"] = address
            path = Path(directory) / PLACED_LAYOUT
            path.write_text(json.dumps(document, indent=2))
            from mqbench.broker.layout import load_layout

            placed = load_layout(path)
            moved = placed.with_port_offset(port_offset)
            for host in hosts:
                busy = ray.get(actors[host].busy_ports.remote(wanted_ports(moved, host)), timeout=CALL_TIMEOUT_S)
                if busy:
                    raise UserError(f"on host {host}'s node {where[host]['node']}: {busy}")
        except BaseException:
            for actor in actors.values():
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001
                    pass
            if group_name and self.detached:
                ray.util.remove_placement_group(group)
            raise
        settings = {"ray": {"address": engine.options.address, "namespace": NAMESPACE, "cluster_id": cluster_id,
                            "detached": self.detached, "placement_group": group_name, "hosts": where}}
        hosts_object = RayHosts(ray, directory, settings["ray"], actors)
        _OPEN[str(Path(directory).resolve())] = hosts_object
        return placed, hosts_object, settings
