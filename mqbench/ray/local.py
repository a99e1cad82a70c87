"""A local Ray cluster of several nodes on this machine, for tests and ``mqbench bench workers``.

Ray binds its servers to every interface and replaces a loopback ``--node-ip-address`` with the
machine's routed address, so a local cluster is started inside a network namespace of its own that
has only loopback (``private_netns_argv``: ``unshare -n``, root or user namespaces needed): there
Ray's node address is 127.0.0.1 and nothing it opens is reachable from outside.

``local_ray(nodes)`` runs ``ray start --head`` (no CPU for work: nothing lands on the head unless
asked) on 127.0.0.1 and ``nodes`` worker nodes, each with one CPU, the smallest object store Ray
takes, its own resource ``mqbench_node_<i>``, the room resource ``mqbench_room_<room>`` (``room``, or
``rooms[i]`` when a room per node is given, so a layout's hosts land in their rooms; ``rooms[i]``
may be a list: that node serves every room in it), the labels ``labels[i]`` when given
(``ray start --labels``: what a layout host's ``ray_node = "label:k=v"`` selects) and its own
node address ``127.0.0.<i + 2>`` (Ray keeps a loopback node address inside the namespace), so a
layout placed on them listens on distinct node addresses as on separate machines; every process
listens on loopback with ports of its own; every ``ray start`` is bounded by ``START_TIMEOUT_S``, and
a cluster that failed to start is stopped and started once more (``START_ATTEMPTS``). On leaving
it (however the block ends) every process of THIS cluster is killed, and the temp folder goes; other
Ray clusters of the same user (another test, a user's own) are left alone, which ``ray stop
--force`` would not do (it kills every Ray process of the user). Yields the ``ray://`` address.

Which processes are the cluster's (``owned_pids``): those whose command line names its temp
folder (GCS, raylets, monitors, dashboard: Ray passes them paths under it), those that carry
``MARKER_ENV`` = the temp folder in their environment (every ``ray start`` of the cluster gets it;
the Ray client server has no path of the folder), and every descendant of those (agents, workers).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

START_TIMEOUT_S = 120
OBJECT_STORE_BYTES = 80 * 1024 * 1024


def private_netns_argv(argv: list[str]) -> list[str]:
    """``argv`` run in a new network namespace whose loopback is up (module doc)."""
    return ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def private_netns_available() -> str | None:
    """None when ``private_netns_argv`` works here, else why not."""
    try:
        done = subprocess.run(private_netns_argv(["true"]), capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n cannot run: {exc}"
    return None if done.returncode == 0 else f"unshare -n failed: {done.stderr.decode(errors='replace').strip()}"


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def node_address(index: int) -> str:
    """The node address of worker node ``index`` of ``local_ray``."""
    return f"127.0.0.{index + 2}"


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _node_ports() -> list[str]:
    agent, grpc, env, metrics = _free_ports(4)
    return ["--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(grpc),
            "--runtime-env-agent-port", str(env), "--metrics-export-port", str(metrics)]


def _ray_start(argv: list[str], env: dict) -> None:
    """``ray start ...``, bounded by ``START_TIMEOUT_S``; a failure names Ray's own last words."""
    done = subprocess.run([_ray_bin(), "start", *argv], env=env, timeout=START_TIMEOUT_S, capture_output=True,
                          text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
        raise RuntimeError(f"ray start {' '.join(argv[:2])} failed (exit {done.returncode}):\n{tail}")


START_ATTEMPTS = 2


def _start_cluster(nodes: int, room: str, rooms: list | None, labels: list[dict] | None, env: dict) -> tuple[str, str]:
    """Head and ``nodes`` worker nodes (module doc); (temp folder, ray:// address). A failed start
    (Ray's own start-up timeout, common on a loaded 2-core machine) is stopped and tried once more."""
    for attempt in range(START_ATTEMPTS):
        temp = tempfile.mkdtemp(prefix="mqbray-", dir="/tmp")  # short: Ray's socket paths live under it
        env = {**env, MARKER_ENV: temp}
        gcs, client = _free_ports(2)
        common = ["--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats"]
        try:
            _ray_start(["--head", "--port", str(gcs), "--ray-client-server-port", str(client), "--include-dashboard",
                        "false", "--num-cpus", "0", "--temp-dir", temp, "--node-ip-address", "127.0.0.1", *common,
                        *_node_ports()], env)
            for index in range(nodes):
                node_rooms = rooms[index] if rooms else room
                resources = {f"mqbench_node_{index}": 1}
                for node_room in [node_rooms] if isinstance(node_rooms, str) else node_rooms:
                    resources[f"mqbench_room_{node_room}"] = 1
                node_labels = labels[index] if labels else {}
                label_args = ["--labels", ",".join(f"{k}={v}" for k, v in node_labels.items())] if node_labels else []
                _ray_start(["--address", f"127.0.0.1:{gcs}", "--num-cpus", "1", "--resources", json.dumps(resources),
                            "--node-ip-address", node_address(index), *label_args, *common, *_node_ports()], env)
            return temp, f"ray://127.0.0.1:{client}"
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            stop_cluster(temp)
            shutil.rmtree(temp, ignore_errors=True)
            if attempt + 1 == START_ATTEMPTS:
                raise
            print(f"local_ray: start attempt {attempt + 1} failed, trying again: {str(exc).splitlines()[0]}",
                  file=sys.stderr)
    raise AssertionError("unreachable")


MARKER_ENV = "MQBENCH_RAY_CLUSTER"
STOP_TIMEOUT_S = 30


class Proc:
    """What ``owned_pids`` needs of one process: parent, command line, environment."""

    __slots__ = ("ppid", "cmdline", "environ")

    def __init__(self, ppid: int, cmdline: str, environ: Mapping[str, str]) -> None:
        self.ppid, self.cmdline, self.environ = ppid, cmdline, environ


def owned_pids(procs: Mapping[int, Proc], temp: str) -> set[int]:
    """The pids of ``procs`` that belong to the local cluster whose temp folder is ``temp`` (module
    doc): the command line names the folder, or the environment carries ``MARKER_ENV=temp``, or
    an ancestor is one of those."""
    owned = {pid for pid, p in procs.items() if temp in p.cmdline or p.environ.get(MARKER_ENV) == temp}
    grown = True
    while grown:
        more = {pid for pid, p in procs.items() if pid not in owned and p.ppid in owned}
        owned |= more
        grown = bool(more)
    return owned


def _read_procs(proc_dir: str = "/proc") -> dict[int, Proc]:
    """This user's processes (others' environments cannot be read, and are never ours)."""
    procs, uid = {}, os.getuid()
    for name in os.listdir(proc_dir):
        if not name.isdigit():
            continue
        base = os.path.join(proc_dir, name)
        try:
            if os.stat(base).st_uid != uid:
                continue
            with open(os.path.join(base, "stat"), "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(os.path.join(base, "cmdline"), "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(os.path.join(base, "environ"), "rb") as f:
                environ = dict(item.split("=", 1) for item in f.read().decode(errors="replace").split("\0")
                               if "=" in item)
        except (OSError, ValueError, IndexError):
            continue                    # gone meanwhile, or not readable: not ours to kill
        procs[int(name)] = Proc(ppid, cmdline, environ)
    return procs


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def stop_cluster(temp: str) -> None:
    """Kill every process of the local cluster of ``temp`` (``owned_pids``; as ``ray stop --force``
    would, without touching any other Ray cluster), looking again until none is left (a raylet may
    start a worker meanwhile) and waiting until the killed ones are reaped too (as ``ray stop``
    waits), or ``STOP_TIMEOUT_S`` passed."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    me, killed = os.getpid(), set()
    while time.monotonic() < deadline:
        fresh = {pid for pid in owned_pids(_read_procs(), temp) - {me} if not _zombie(pid)}
        _kill(fresh)
        killed |= fresh
        if not fresh and not any(os.path.exists(f"/proc/{pid}") for pid in killed):
            return
        time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


@contextlib.contextmanager
def local_ray(nodes: int = 3, room: str = "room1", rooms: list | None = None, labels: list[dict] | None = None):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}
    temp = None
    try:
        temp, address = _start_cluster(nodes, room, rooms, labels, env)
        yield address
    finally:
        if temp is not None:
            stop_cluster(temp)
            shutil.rmtree(temp, ignore_errors=True)
