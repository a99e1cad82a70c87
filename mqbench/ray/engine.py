"""The driver's side of a run on a Ray cluster (``--cluster ray://HEAD:10001`` or ``--ray auto``).

``RayEngine(options)`` connects once per run. Then, per cell:

* ``spawn_workers(specs)`` places one ``agents.NodeAgent`` actor per driver worker on the worker
  nodes (never the head unless ``head_workers``): producer ``i`` and consumer ``i`` share a node, at
  most ``workers_per_node`` of each per node, nodes taken in turn. Before a worker starts, its node's
  clock offset is measured (``clock.estimate_offset`` over ``clock_samples`` round trips) and put in
  its spec, so the worker runs on the driver's clock. Each returns a ``run.workers.WorkerHandle``
  whose pipe is relayed over actor calls by a thread, so the orchestrator's ``WorkerSet`` code is
  the one it always runs (pacing, histograms and merging unchanged);
* ``host_placer()`` places a layout's hosts for ``cluster.launcher.up`` (``ray.hosts``): each on
  a node of its own (STRICT_SPREAD, rooms as node resources) or on the node its address names,
  one named actor per host running its processes in the same folders and with the same arguments
  as locally (the node's local disk), listening on the node's address;
* ``sample_counters()`` / ``report(first, last)``: per node CPU busy seconds, the workers' CPU
  seconds, network bytes, clock offset and uncertainty; the result's ``ray`` field.

``close()`` kills every actor (their processes die with them) and removes placement groups; the
connection ends with it. UserError when Ray is not installed, the cluster cannot be reached, or it
has too few nodes for what was asked.
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mqbench.errors import UserError
from mqbench.ray.agents import NodeAgent
from mqbench.ray.clock import ClockOffset, e2e_uncertainty_ns, estimate_offset
from mqbench.ray.placement import POLICIES
from mqbench.ray.placement import plan as plan_placement

log = logging.getLogger(__name__)

HEAD_RESOURCE = "node:__internal_head__"
ROOM_RESOURCE = "mqbench_room_"
PLACE_TIMEOUT_S = 60.0
CONNECT_TRIES = 3
POLL_S = 1.0


@dataclass
class RayOptions:
    address: str                 # "ray://HOST:PORT", or "auto" inside a Ray job
    workers_per_node: int = 1    # producers (and as many consumers) per node
    head_workers: bool = False   # also place workers and layout hosts on the head node
    clock_samples: int = 16
    placement: str = "topic"     # ray.placement: a topic's producers and consumers on one node, or "spread"

    def validate(self) -> None:
        if self.workers_per_node < 1:
            raise UserError("--workers-per-node must be at least 1")
        if self.placement not in POLICIES:
            raise UserError(f"--ray-placement {self.placement!r}: choose one of {', '.join(POLICIES)}")
        if self.address != "auto" and not self.address.startswith("ray://"):
            raise UserError(f"--cluster {self.address!r}: give ray://HEAD:10001 (or --ray auto inside a Ray job)")


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--cluster ray://... needs Ray: pip install 'mqbench[ray]'") from None
    return ray


def connect(address: str):
    """``ray``, connected to the cluster at ``address`` in the ``mqbench`` namespace (once per
    process). A Ray client session that fails to start is tried up to ``CONNECT_TRIES`` times: the
    head's client server sometimes fails to start a session's server under load ("Starting Ray
    client server failed", seen on this 2-core machine at load 10-30). UserError when it cannot be
    reached."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    for attempt in range(1, CONNECT_TRIES + 1):
        try:
            ray.init(address=address, namespace="mqbench", log_to_driver=False, logging_level=logging.WARNING)
            return ray
        except Exception as exc:  # noqa: BLE001 - connection refused, version mismatch: one line
            if attempt == CONNECT_TRIES or not address.startswith("ray://") or "failed" not in str(exc):
                raise UserError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
            log.info("Ray client session failed to start (try %d): %s", attempt, exc)
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001
                pass
            time.sleep(2.0 * attempt)
    raise AssertionError("unreachable")


class _RemoteProcess:
    """What ``WorkerSet`` needs of a worker's process (join, is_alive, terminate, kill, exitcode,
    pid), for a worker that runs under a Ray actor. Two relay threads copy the pipe: one forwards
    the parent's control messages as they come (its poll wakes on each), one waits on the actor for the
    worker's messages (``poll`` returns at the first message, else after ``POLL_S``). One thread
    doing both in turn polled every 50 ms to keep control latency low: 20 Ray client round trips a
    second per worker, idle or not."""

    def __init__(self, ray, agent, relay_end, name: str):
        self.ray, self.agent, self.relay_end = ray, agent, relay_end
        self.pid = None            # on another machine: its CPU is counted by the node's agent
        self.exitcode: int | None = None
        self._ended = threading.Event()
        self._control = threading.Thread(target=self._forward_control, name=f"ray-control-{name}", daemon=True)
        self._thread = threading.Thread(target=self._relay, name=f"ray-relay-{name}", daemon=True)
        self._control.start()
        self._thread.start()

    def _forward_control(self) -> None:
        try:
            while not self._ended.is_set():
                if self.relay_end.poll(POLL_S):       # wakes at once on a message; the flag ends it
                    self.agent.send.remote(self.relay_end.recv())   # an actor runs one caller's calls in order
        except (EOFError, OSError):
            try:
                self.agent.stop.remote(5.0)                     # the parent closed: end the worker
            except Exception:  # noqa: BLE001 - the actor is gone already
                pass
        except Exception as exc:  # noqa: BLE001 - the actor or the connection died
            log.info("control relay ended: %s", exc)

    def _relay(self) -> None:
        try:
            while True:
                messages, ended, exitcode = self.ray.get(self.agent.poll.remote(POLL_S))
                for message in messages:
                    self.relay_end.send(message)
                if ended:
                    self.exitcode = exitcode if exitcode is not None else 0
                    return
        except Exception as exc:  # noqa: BLE001 - the actor or its node died: the worker ended without a result
            log.info("relay ended: %s", exc)
            self.exitcode = -1
        finally:
            self._ended.set()
            self._control.join(POLL_S + 1)      # before the close: never close an fd another thread reads
            try:
                self.relay_end.close()
            except OSError:
                pass

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def terminate(self) -> None:
        try:
            self.ray.get(self.agent.stop.remote(2.0), timeout=10)
        except Exception:  # noqa: BLE001
            self.kill()

    def kill(self) -> None:
        try:
            self.ray.kill(self.agent)
        except Exception:  # noqa: BLE001
            pass


def _topic_shares(producer_spec: dict | None) -> dict[str, float]:
    """The message share of each topic a producer sends: from its profile when it paces at a
    rate; empty (no topic placement) for a trace, ``--rate profile`` or no producer."""
    from mqbench.workloads.profile import load_profile
    from mqbench.workloads.source import is_trace_path

    if producer_spec is None or producer_spec.get("rate") is None or is_trace_path(Path(producer_spec["source"])):
        return {}
    wanted = set(producer_spec["topics"])
    return {t.name: t.share for t in load_profile(producer_spec["source"]).topics if t.name in wanted}


def _cell_spec(spec: dict, placed, cell_index: int | None, producers: int) -> dict:
    """``spec`` for a worker of a topic cell: its topics and the groups reading them; a producer
    also gets the cell's share of the rate, its index among the cell's producers and its part of
    all producers' messages (``run.producer_driver``). Unchanged under ``spread``."""
    if cell_index is None:
        return spec
    cell = placed.cells[cell_index]
    total = sum(c.share for c in placed.cells) or 1.0
    out = {**spec, "subscriptions": [s for s in spec["subscriptions"] if s[1] in cell.topics]}
    if spec["role"] == "producer":
        local = sum(1 for (role, index), (_, at) in placed.workers.items()
                    if role == "producer" and at == cell_index and index < spec["worker_index"])
        out.update(topics=list(cell.topics), topic_share=cell.share / total, part=[spec["worker_index"], producers],
                   worker_index=local, workers=cell.producers)
    return out


class RayEngine:
    def __init__(self, options: RayOptions):
        options.validate()
        self.options = options
        self.ray = ray = connect(options.address)
        self.agent_class = ray.remote(NodeAgent)
        self.actors: list = []
        self.groups: list = []
        self.offsets: dict[str, ClockOffset] = {}
        self.node_names: dict[str, str] = {}   # node id -> "hostname/ip"
        self.placed: dict[str, list[str]] = {"producer": [], "consumer": [], "host": []}  # node ids
        self.placement = None                             # placement.Placement of the cell's workers
        self.cell_nodes: dict = {}                        # cell index (None: spread) -> role -> node ids
        self.counter_agents: list[tuple[str, object]] = []   # (node id, agent) of every worker and layout host
        self.host_nodes: dict[str, str] = {}            # layout host -> node id

    # --- nodes ---------------------------------------------------------------------------

    def nodes(self) -> list[dict]:
        """Alive nodes that may take workers and layout hosts (the head only with head_workers)."""
        alive = [n for n in self.ray.nodes() if n.get("Alive")]
        usable = [n for n in alive if self.options.head_workers or HEAD_RESOURCE not in n.get("Resources", {})]
        return sorted(usable, key=lambda n: (n.get("NodeManagerAddress", ""), n["NodeID"]))

    def _agent(self, label: str, **options):
        actor = self.agent_class.options(num_cpus=0, max_concurrency=4, **options).remote(label)
        self.actors.append(actor)
        return actor

    def _on_node(self, node_id: str, label: str):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return self._agent(label, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))

    def measure_clock(self, node_id: str, agent) -> ClockOffset:
        if node_id not in self.offsets:
            samples = []
            for _ in range(self.options.clock_samples):
                sent_ns = time.monotonic_ns()
                node_ns = self.ray.get(agent.clock_ns.remote(), timeout=30)
                samples.append((sent_ns, node_ns, time.monotonic_ns()))
            self.offsets[node_id] = estimate_offset(samples)
        return self.offsets[node_id]

    def _describe(self, node_id: str, agent) -> None:
        if node_id not in self.node_names:
            info = self.ray.get(agent.info.remote(), timeout=30)
            self.node_names[node_id] = f"{info['hostname']}/{info['node_ip']}"

    # --- workers -------------------------------------------------------------------------

    def spawn_workers(self, specs: list[dict]):
        """``run.workers.WorkerHandle`` per spec, each running under an actor on the node that
        ``placement.plan`` gives it (by default a topic's producers and consumers on one node)."""
        from mqbench.run.workers import WorkerHandle

        nodes = self.nodes()
        producers = sum(1 for s in specs if s["role"] == "producer")
        consumers = sum(1 for s in specs if s["role"] == "consumer")
        per_role = max(producers, consumers)
        needed = math.ceil(per_role / self.options.workers_per_node)
        if len(nodes) < needed:
            raise UserError(f"{per_role} producer/consumer pairs at {self.options.workers_per_node} per node need "
                            f"{needed} worker nodes; the Ray cluster has {len(nodes)}"
                            + ("" if self.options.head_workers else " (the head takes none without --ray-head-workers)"))
        first_producer = next((s for s in specs if s["role"] == "producer"), None)
        placed = plan_placement(_topic_shares(first_producer), producers, consumers, len(nodes),
                                self.options.workers_per_node, self.options.placement)
        self.placement = placed
        context = multiprocessing.get_context("spawn")
        handles = []
        for spec in specs:
            name = f"{spec['role']}-{spec['worker_index']}"
            node_index, cell_index = placed.workers[(spec["role"], spec["worker_index"])]
            node_id = nodes[node_index]["NodeID"]
            spec = _cell_spec(spec, placed, cell_index, producers)
            agent = self._on_node(node_id, name)
            self._describe(node_id, agent)
            offset = self.measure_clock(node_id, agent)
            self.counter_agents.append((node_id, agent))
            self.placed[spec["role"]].append(node_id)
            self.cell_nodes.setdefault(cell_index, {"producer": set(), "consumer": set()})[spec["role"]].add(node_id)
            self.ray.get(agent.start_worker.remote({**spec, "clock_offset_ns": offset.offset_ns}), timeout=60)
            parent_end, relay_end = context.Pipe(duplex=True)
            process = _RemoteProcess(self.ray, agent, relay_end, name)
            handles.append(WorkerHandle(name, spec["role"], process, parent_end))
        return handles

    # --- layout hosts --------------------------------------------------------------------

    def host_placer(self, detached: bool = False):
        """``launcher.up``'s placer: each layout host on a node of its own (``ray.hosts``);
        ``detached`` for ``mqbench cluster up`` (outlives this driver)."""
        from mqbench.ray.hosts import RayPlacer

        return RayPlacer(self, detached)

    def note_host(self, host: str, info: dict, agent) -> None:
        """A layout host placed on ``info``'s node: named in the report, its clock measured."""
        self.host_nodes[host] = info["node_id"]
        self.node_names.setdefault(info["node_id"], f"{info['hostname']}/{info['node_ip']}")
        self.placed["host"].append(info["node_id"])
        self.measure_clock(info["node_id"], agent)
        self.counter_agents.append((info["node_id"], agent))     # the node's CPU and network, hosts' too

    # --- figures ----------------------------------------------------------------------------

    def sample_counters(self) -> dict[str, dict]:
        """node id -> the node's counters (``NodeAgent.counters``) on every node with workers or layout
        hosts, its workers' CPU seconds summed."""
        out: dict[str, dict] = {}
        refs = [(node, agent.counters.remote()) for node, agent in self.counter_agents]
        for node, ref in refs:
            sample = self.ray.get(ref, timeout=30)
            if node not in out:
                out[node] = sample
            elif sample["worker_cpu_s"] is not None:
                out[node]["worker_cpu_s"] = (out[node]["worker_cpu_s"] or 0.0) + sample["worker_cpu_s"]
        return out

    def report(self, first: dict | None, last: dict | None) -> dict:
        """The result's ``ray`` field (documented in ``harness.results``)."""
        nodes = []
        for node_id in sorted(set(self.placed["producer"]) | set(self.placed["consumer"]) | set(self.placed["host"])):
            offset = self.offsets.get(node_id)
            row = {"node_id": node_id, "name": self.node_names.get(node_id),
                   "producers": self.placed["producer"].count(node_id),
                   "consumers": self.placed["consumer"].count(node_id),
                   "layout_hosts": sorted(h for h, n in self.host_nodes.items() if n == node_id),
                   **(offset.as_dict() if offset else {})}
            a, b = (first or {}).get(node_id), (last or {}).get(node_id)
            if a and b:
                wall_s = max((b["t_ns"] - a["t_ns"]) / 1e9, 1e-9)
                row["node_cpu_busy_share"] = (b["cpu_busy_s"] - a["cpu_busy_s"]) / (wall_s * b["cpu_count"])
                row["worker_cpu_s"] = (None if a["worker_cpu_s"] is None or b["worker_cpu_s"] is None
                                       else b["worker_cpu_s"] - a["worker_cpu_s"])
                row["net_bytes_sent_per_s"] = (b["net_bytes_sent"] - a["net_bytes_sent"]) / wall_s
                row["net_bytes_recv_per_s"] = (b["net_bytes_recv"] - a["net_bytes_recv"]) / wall_s
            nodes.append(row)
        # an e2e latency pairs a producer and a consumer of one topic: within a cell (topic placement)
        e2e = max((e2e_uncertainty_ns(n["producer"], n["consumer"], self.offsets) for n in self.cell_nodes.values()),
                  default=None) if self.placed["producer"] else None
        cells = [] if self.placement is None else [
            {"topics": c.topics, "rate_share": c.share / (sum(x.share for x in self.placement.cells) or 1.0),
             "producers": c.producers, "consumers": c.consumers,
             "node_ids": sorted(self.cell_nodes.get(at, {}).get("producer", set()))} for at, c in
            enumerate(self.placement.cells)]
        return {"address": self.options.address, "workers_per_node": self.options.workers_per_node,
                "placement": None if self.placement is None else self.placement.policy, "topic_cells": cells,
                "nodes": nodes, "e2e_clock_uncertainty_us": None if e2e is None else e2e / 1000}

    def end_cell(self) -> None:
        """Kill the cell's actors (their workers and broker processes die with them) and placement groups."""
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        for group in self.groups:
            try:
                self.ray.util.remove_placement_group(group)
            except Exception:  # noqa: BLE001
                pass
        self.actors, self.groups = [], []
        self.placed = {"producer": [], "consumer": [], "host": []}
        self.counter_agents, self.host_nodes = [], {}
        self.placement, self.cell_nodes = None, {}

    def close(self) -> None:
        self.end_cell()
        try:
            self.ray.shutdown()
        except Exception:  # noqa: BLE001
            pass
