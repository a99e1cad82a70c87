"""What runs on a Ray node: one ``NodeAgent`` actor per placed worker or layout host.

The agent is a plain class (``engine`` wraps it with ``ray.remote``), so it is importable and
readable without Ray. It runs nothing new: a driver worker is the same ``run.workers.worker_main``
process the local path spawns (same open-loop pacing, same HdrHistograms), and a broker host's
processes are started by the same ``cluster.processes.spawn``. What it adds is a relay of the
worker's pipe over actor calls (``poll`` / ``send``), clock samples for the offset estimate, and the
node's CPU and network counters.

Contract:

* ``start_worker(spec)``: spawns the worker; ``spec["clock_offset_ns"]`` (node clock minus driver
  clock) makes the worker run on the driver's clock (``run.workers``);
* ``poll(timeout_s)``: ``(messages, ended, exitcode)``: every message the worker sent so far (waits
  up to ``timeout_s`` for the first); ``ended`` once its pipe closed;
* ``send(message)`` / ``stop(timeout_s)``: control, then SIGTERM and SIGKILL after ``timeout_s``;
* ``spawn_process(record, files)``: one broker/name server process of a layout host, run by this
  node's Python (the record's argv[0] is replaced); ``files`` (path -> bytes: the cluster secret,
  the placed layout) are written first where they are missing or differ (mode 0600); the
  processes end with the agent (a lifeline). Returns the pid, start time and argv to record;
* the operations of ``cluster.processes.LocalHosts`` on records (as dicts) of this node:
  ``process_states``, ``signal_processes``, ``wait_gone``, ``stop_processes``, ``cpu_s``, ``tail``,
  ``remove_stores`` (each record's ``store`` folder), ``busy_ports`` (the launcher's port check);
* a DR drill's room links on this node (``mqbench.ray.links``): ``start_links(layout, specs, seed)``
  runs the inter-room proxies of this node's room view (``dr.fabric.ProxyFabric``; an alias
  address another node of this machine serves already is shared), ``cut_links(room)``,
  ``heal_links()``, ``link_bytes()``; and scheme C's replicator with its link to room1
  (``dr.room_link.ThreadedReplicator``): ``start_replicator(kwargs)``, then
  ``replicator(op, *args)`` for ``cut``, ``heal``, ``bytes``, ``copied``, ``lag_total``, ``close``.
  Both end with the agent.

An agent holds no cluster state of its own: every call carries its records (``cluster.json`` is the
truth), so a later ``mqbench cluster`` command, a new Ray driver that found the agent by its name,
acts on the same processes.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path


class NodeAgent:
    def __init__(self, label: str):
        self.label = label
        self.worker = None      # multiprocessing.Process
        self.conn = None        # the agent's end of the worker's pipe
        self.ended = False
        self.lifeline = None     # broker.lifeline.Lifeline of the processes this agent started
        self.worker_cpu_seen = 0.0   # the worker's CPU seconds at the last sample
        self.links = None       # dr.fabric.ProxyFabric: a DR drill's room links on this node
        self.copier = None      # dr.room_link.ThreadedReplicator: scheme C's replicator on this node

    # --- the node --------------------------------------------------------------------------

    def info(self) -> dict:
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "hostname": socket.gethostname(),
                "node_ip": ray.util.get_node_ip_address(), "agent_pid": os.getpid(), "label": self.label}

    def clock_ns(self) -> int:
        return time.monotonic_ns()

    def counters(self) -> dict:
        """The node's CPU seconds (all processes), network bytes, and CPU seconds of this agent's
        worker process (None without one; still counted once it has ended): sampled at the start
        and end of the measured phase by the driver."""
        import psutil

        cpu = psutil.cpu_times()
        net = psutil.net_io_counters()
        worker_cpu_s = None
        if self.worker is not None and self.worker.pid:
            import resource

            try:
                times = psutil.Process(self.worker.pid).cpu_times()
                worker_cpu_s = times.user + times.system
            except psutil.Error:    # it ended and was reaped: its seconds are this process's children's
                usage = resource.getrusage(resource.RUSAGE_CHILDREN)
                worker_cpu_s = usage.ru_utime + usage.ru_stime
            # never less than before: a worker that ended between two samples keeps its seconds
            worker_cpu_s = self.worker_cpu_seen = max(worker_cpu_s, self.worker_cpu_seen)
        return {"t_ns": time.monotonic_ns(), "cpu_busy_s": cpu.user + cpu.system + getattr(cpu, "irq", 0.0)
                + getattr(cpu, "softirq", 0.0), "cpu_count": psutil.cpu_count() or 1,
                "net_bytes_sent": net.bytes_sent, "net_bytes_recv": net.bytes_recv, "worker_cpu_s": worker_cpu_s}

    # --- a driver worker -------------------------------------------------------------------

    def start_worker(self, spec: dict) -> int:
        import multiprocessing

        from mqbench.run.workers import worker_main

        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe(duplex=True)
        self.worker = context.Process(target=worker_main, args=(spec, child_end), daemon=True,
                                      name=f"mqbench-{spec['role']}-{spec['worker_index']}")
        self.worker.start()
        child_end.close()
        self.conn = parent_end
        return self.worker.pid

    def poll(self, timeout_s: float) -> tuple[list, bool, int | None]:
        messages: list = []
        if self.conn is None or self.ended:
            return messages, True, None if self.worker is None else self.worker.exitcode
        try:
            if self.conn.poll(timeout_s):
                while True:
                    messages.append(self.conn.recv())
                    if not self.conn.poll(0):
                        break
        except (EOFError, OSError):
            self.ended = True
            self.worker.join(timeout=2)
        return messages, self.ended, self.worker.exitcode if self.ended else None

    def send(self, message: dict) -> None:
        if self.conn is not None and not self.ended:
            try:
                self.conn.send(message)
            except (OSError, EOFError, BrokenPipeError):
                pass

    def stop(self, timeout_s: float = 5.0) -> int | None:
        if self.worker is None:
            return None
        self.worker.join(timeout=timeout_s if self.ended else 0.1)
        if self.worker.is_alive():
            self.worker.terminate()
            self.worker.join(timeout=timeout_s)
        if self.worker.is_alive():
            self.worker.kill()
            self.worker.join(timeout=timeout_s)
        if self.conn is not None:
            self.conn.close()
        return self.worker.exitcode

    # --- a layout host's processes -------------------------------------------------------

    def spawn_process(self, record_doc: dict, files: dict[str, bytes]) -> tuple[int, float, list[str]]:
        import sys

        from mqbench.broker.lifeline import Lifeline
        from mqbench.cluster.processes import ProcessRecord, spawn

        for name, content in files.items():
            path = Path(name)
            if path.exists() and path.read_bytes() == content:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(path.name + f".{os.getpid()}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.replace(temp, path)
        record = ProcessRecord(**record_doc)
        record.argv = [sys.executable, *record.argv[1:]]    # this node's interpreter of the same install
        if self.lifeline is None:
            self.lifeline = Lifeline()
        spawn(record, lifeline=self.lifeline)
        return record.pid, record.started_at_s, record.argv

    @staticmethod
    def _records(docs: list[dict]) -> list:
        from mqbench.cluster.processes import ProcessRecord

        return [ProcessRecord(**doc) for doc in docs]

    def process_states(self, docs: list[dict]) -> dict[str, str]:
        return {r.name: r.state() for r in self._records(docs)}

    def signal_processes(self, docs: list[dict], sig: int) -> list[str]:
        from mqbench.cluster.processes import send_signal

        return send_signal(self._records(docs), sig)

    def wait_gone(self, docs: list[dict], timeout_s: float) -> list[str]:
        from mqbench.cluster.processes import wait_gone

        return [r.name for r in wait_gone(self._records(docs), timeout_s)]

    def stop_processes(self, docs: list[dict], timeout_s: float) -> dict[str, str]:
        from mqbench.cluster.processes import stop

        return stop(self._records(docs), timeout_s=timeout_s)

    def cpu_s(self, docs: list[dict]) -> dict[str, float | None]:
        return {r.name: r.cpu_s() for r in self._records(docs)}

    def tail(self, doc: dict, lines: int) -> str:
        from mqbench.cluster.processes import tail

        return tail(self._records([doc])[0].log_path, lines)

    def remove_stores(self, docs: list[dict]) -> list[str]:
        import shutil

        removed = []
        for record in self._records(docs):
            store = Path(record.workdir) / "store"
            if store.is_dir():
                shutil.rmtree(store, ignore_errors=True)
                removed.append(str(store))
        return removed

    def busy_ports(self, wanted: list[tuple[str, int, str]]) -> str | None:
        """The launcher's port check on this node: None when every (address, port) binds, else why not."""
        from mqbench.cluster.launcher import check_addresses_free
        from mqbench.errors import UserError

        try:
            check_addresses_free(wanted)
        except UserError as exc:
            return str(exc)
        return None

    # --- a DR drill's room links and replicator on this node ---------------------------------

    def start_links(self, layout, specs: list, seed: str) -> dict:
        """Start the proxies of ``specs`` (``dr.fabric.ProxySpec``) here; which listen, how many shared."""
        from mqbench.dr.fabric import ProxyFabric

        self.close_links()
        self.links = ProxyFabric(layout, seed=seed, specs=specs, share_busy=True).start()
        return {"listening": [list(spec.listen) for spec, _proxy in self.links._proxies], "shared": self.links.shared}

    def cut_links(self, room: str) -> None:
        if self.links is not None:
            self.links.cut_room(room)

    def heal_links(self) -> None:
        if self.links is not None:
            self.links.heal()

    def link_bytes(self) -> int:
        return 0 if self.links is None else self.links.cross_room_bytes()

    def close_links(self) -> None:
        if self.links is not None:
            self.links.close()
            self.links = None

    def start_replicator(self, kwargs: dict) -> None:
        from mqbench.dr.room_link import ThreadedReplicator

        if self.copier is not None:
            self.copier.close()
        self.copier = ThreadedReplicator(**kwargs)
        self.copier.start()

    def replicator(self, op: str, *args):
        if op not in ("cut", "heal", "bytes", "copied", "lag_total", "close"):
            raise ValueError(f"no replicator operation {op!r}")
        if self.copier is None:
            return None
        out = getattr(self.copier, op)(*args)
        if op == "close":
            self.copier = None
        return out
