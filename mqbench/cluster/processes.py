"""Real OS processes for a reference cluster: start, find, signal and stop them.

A cluster lives in a directory::

    DIR/cluster.json          what was started: layout, port offset, settings, one record per process
    DIR/namesrv/namesrv.log   the name server's output
    DIR/<group>/<replica>/    one broker instance's store, its log file ``broker.log``

Each process runs in its own session (``start_new_session``), so it outlives ``mqbench cluster up``
and a signal to the launcher does not reach it; an embedded cluster's processes are spawned with a
``lifeline`` instead, so they end with the command that owns them. A record keeps the process's start time next to its
pid, so a recycled pid is never mistaken for (or killed as) one of ours.

Contract: ``ClusterState.load(dir)`` raises ``UserError`` when no cluster was started there;
``kill`` and ``stop`` only ever signal processes whose pid *and* start time match their record.

Where the processes run: ``ClusterState.hosts()`` is what checks, signals, starts and stops them.
``LOCAL`` (``LocalHosts``) does it with psutil on this machine; a cluster placed on Ray nodes
(``settings["ray"]``, written by ``mqbench.ray.hosts``) routes every one of those operations
through its hosts' named actors on their nodes (``mqbench.ray.hosts.RayHosts``), with the same
functions below run there.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from mqbench.errors import MqbenchError, UserError

STATE_FILE = "cluster.json"
STATE_SCHEMA = "mqbench.cluster-state/1"


class ProcessStillAlive(MqbenchError):
    """Processes that SIGKILL did not end within the wait: a thread stuck in the kernel (an fsync
    on a loaded disk, a debugger's stop) keeps the process, its store lock and its ports alive.
    ``records`` are those processes; the CLI prints the message on one line (exit code 1)."""

    def __init__(self, records: list[ProcessRecord], waited_s: float):
        self.records = records
        names = ", ".join(f"{r.name} (pid {r.pid})" for r in records)
        super().__init__(f"{names} still alive {waited_s:g} s after SIGKILL: a thread stuck in the kernel holds "
                         "its store lock and ports, so starting it again fails until it ends; "
                         "see `ps -L -o pid,tid,stat,wchan -p PID`")


@dataclass
class ProcessRecord:
    """One process of the cluster, as started."""

    name: str  # "namesrv" or "group/replica"
    kind: str  # "namesrv" | "broker"
    host: str
    room: str
    addr: str
    workdir: str
    argv: list[str]
    pid: int = 0
    started_at_s: float = 0.0  # psutil create_time of the process, to detect pid reuse

    @property
    def log_path(self) -> Path:
        return Path(self.workdir) / f"{self.kind}.log"

    def process(self) -> psutil.Process | None:
        """The live process this record started, or None if it is gone (or the pid was reused).
        A zombie is gone once its last thread is: after a SIGKILL the thread group leader can exit
        before a thread stuck in an uninterruptible call (an fsync on a loaded disk), and until
        that one ends the process still holds its files (a store's lock) and its sockets."""
        if not self.pid:
            return None
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started_at_s) > 0.05:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE and proc.num_threads() <= 1:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None

    def state(self) -> str:
        """``running``, ``stopped`` (SIGSTOPped) or ``down``."""
        proc = self.process()
        if proc is None:
            return "down"
        try:
            return "stopped" if proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP) else "running"
        except psutil.Error:
            return "down"

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) used so far, None when it is not running."""
        proc = self.process()
        if proc is None:
            return None
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system


class LocalHosts:
    """The processes of a cluster whose hosts are this machine's addresses (psutil, here)."""

    remote = False

    def states(self, records: list[ProcessRecord]) -> dict[str, str]:
        return {r.name: r.state() for r in records}

    def spawn(self, record: ProcessRecord, lifeline=None) -> None:
        spawn(record, lifeline=lifeline)

    def signal(self, records: list[ProcessRecord], sig: int) -> list[str]:
        return send_signal(records, sig)

    def wait_gone(self, records: list[ProcessRecord], timeout_s: float) -> list[ProcessRecord]:
        return wait_gone(records, timeout_s)

    def stop(self, records: list[ProcessRecord], timeout_s: float) -> dict[str, str]:
        return stop(records, timeout_s)

    def cpu_s(self, records: list[ProcessRecord]) -> dict[str, float | None]:
        return {r.name: r.cpu_s() for r in records}

    def tail(self, record: ProcessRecord, lines: int = 15) -> str:
        return tail(record.log_path, lines)

    def remove_stores(self, records: list[ProcessRecord]) -> None:
        """Nothing: a local cluster's stores stay in its folder (``cluster down`` keeps them)."""

    def forget(self) -> None:
        """Nothing to release for local processes."""


LOCAL = LocalHosts()


@dataclass
class ClusterState:
    directory: Path
    layout_source: str
    layout_name: str
    port_offset: int
    settings: dict = field(default_factory=dict)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ClusterState":
        directory = Path(directory)
        path = directory / STATE_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"no cluster in {directory} (no {STATE_FILE}); start one with `mqbench cluster up`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path} is corrupt: {exc}") from None
        if not isinstance(doc, dict) or doc.get("schema") != STATE_SCHEMA:
            found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise UserError(f"{path} has schema {found!r}, expected {STATE_SCHEMA!r}")
        if "namesrv" not in _field(doc, "processes", dict, path):
            raise UserError(f"{path} is corrupt: it records no name server process")
        return cls(directory=directory, layout_source=_field(doc, "layout_source", str, path),
                   layout_name=_field(doc, "layout_name", str, path),
                   port_offset=_field(doc, "port_offset", int, path),
                   settings=_field(doc, "settings", dict, path, default={}),
                   processes={name: _record(name, rec, path)
                              for name, rec in _field(doc, "processes", dict, path).items()})

    def hosts(self):
        """What runs this cluster's processes (module doc): ``LOCAL``, or the Ray hosts."""
        if self.settings.get("ray"):
            from mqbench.ray.hosts import RayHosts

            return RayHosts.of(self)
        return LOCAL

    def save(self) -> None:
        doc = {"schema": STATE_SCHEMA, "layout_source": self.layout_source, "layout_name": self.layout_name,
               "port_offset": self.port_offset, "settings": self.settings,
               "processes": {name: asdict(rec) for name, rec in self.processes.items()}}
        tmp = self.directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, self.directory / STATE_FILE)

    def select(self, target: str) -> list[ProcessRecord]:
        """Processes named by ``target``: an instance (``group/replica``), a host, a room, a group,
        ``namesrv`` or ``all``. Raises ``UserError`` listing the valid targets otherwise."""
        records = list(self.processes.values())
        if target == "all":
            return records
        for key in ("name", "host", "room"):
            chosen = [r for r in records if getattr(r, key) == target and (key == "name" or r.kind == "broker")]
            if chosen:
                return chosen
        chosen = [r for r in records if r.kind == "broker" and r.name.split("/")[0] == target]
        if chosen:
            return chosen
        names = sorted({r.name for r in records} | {r.host for r in records} | {r.room for r in records})
        raise UserError(f"nothing in this cluster is called {target!r}; choose from: {', '.join(names)}")


_RECORD_FIELDS = {"name": str, "kind": str, "host": str, "room": str, "addr": str, "workdir": str, "argv": list,
                  "pid": int, "started_at_s": (int, float)}


def _field(doc: dict, key: str, kind, path: Path, default=None):
    if key not in doc and default is not None:
        return default
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{path} is corrupt: {key!r} is {type(value).__name__}, not {getattr(kind, '__name__', kind)}")
    return value


def _record(name: object, rec: object, path: Path) -> ProcessRecord:
    """One process record of cluster.json, every field checked (a hand-edited file gets a clear error)."""
    if not isinstance(rec, dict) or set(rec) != set(_RECORD_FIELDS):
        raise UserError(f"{path} is corrupt: process {name!r} must have exactly the fields "
                        f"{', '.join(_RECORD_FIELDS)}")
    for key, kind in _RECORD_FIELDS.items():
        _field(rec, key, kind, path)
    if rec["kind"] not in ("namesrv", "broker") or rec["name"] != name or rec["pid"] < 0 or \
            not all(isinstance(a, str) for a in rec["argv"]):
        raise UserError(f"{path} is corrupt: process {name!r} has a bad kind, name, pid or argv")
    return ProcessRecord(**rec)


def spawn(record: ProcessRecord, env: dict | None = None, lifeline=None) -> None:
    """Start ``record``'s process in its own session, output appended to its log; fills pid.
    With a ``lifeline.Lifeline`` the process dies with this one (``lifeline`` module doc)."""
    Path(record.workdir).mkdir(parents=True, exist_ok=True)
    extra = lifeline.popen_kwargs() if lifeline is not None else {}
    env = {**os.environ, **(env or {}), **extra.pop("env", {})}
    with open(record.log_path, "ab") as log:
        log.write(f"--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(record.argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(record.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=record.workdir, start_new_session=True, env=env, **extra)
    record.pid = proc.pid
    try:
        record.started_at_s = psutil.Process(proc.pid).create_time()
    except psutil.Error:  # it died at once; its log says why
        record.started_at_s = 0.0


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def send_signal(records: list[ProcessRecord], sig: int) -> list[str]:
    """Signal every live process of ``records``; returns the names signalled."""
    hit = []
    for record in records:
        proc = record.process()
        if proc is None:
            continue
        try:
            proc.send_signal(sig)
            hit.append(record.name)
        except psutil.Error:
            pass
    return hit


def wait_gone(records: list[ProcessRecord], timeout_s: float) -> list[ProcessRecord]:
    """Wait up to ``timeout_s`` for the processes to exit; returns those still alive."""
    deadline = time.monotonic() + timeout_s
    alive = [r for r in records if r.alive()]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [r for r in alive if r.alive()]
    return alive


def stop(records: list[ProcessRecord], timeout_s: float = 10.0, kill_wait_s: float = 5.0) -> dict[str, str]:
    """Clean stop (SIGTERM), then SIGKILL whatever is left after ``timeout_s``; name -> how it ended
    (``still alive ... after SIGKILL`` for one not gone ``kill_wait_s`` after that)."""
    outcome = {r.name: "not running" for r in records if not r.alive()}
    running = [r for r in records if r.alive()]
    send_signal(running, signal.SIGTERM)
    left = wait_gone(running, timeout_s)
    send_signal(left, signal.SIGKILL)
    stuck = wait_gone(left, kill_wait_s)
    for record in running:
        outcome[record.name] = ("stopped" if record not in left else "killed after timeout" if record not in stuck
                                else f"still alive {kill_wait_s:g} s after SIGKILL (pid {record.pid})")
    return outcome


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages about a process that died."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
