"""Machine figures of a run, read from the operating system and the brokers, never estimated.

* ``cpu_seconds(pids)``: user + system CPU time of processes, from ``/proc/<pid>/stat`` fields 14
  and 15 (utime, stime, in clock ticks of ``SC_CLK_TCK``). Children are not included: the broker is
  one process. A process that has gone counts 0 (the caller takes a difference of two readings
  over the measured phase, so a broker that died is visible as an error elsewhere, not here).
* ``allocated_bytes(dirs)``: bytes the files under the store directories occupy on disk
  (``st_blocks * 512``, so preallocated-but-sparse segment files count what they really use).
* ``replication_bytes(addrs)``: sum of ``raftBytesSent`` over the brokers' runtime info
  (GET_BROKER_RUNTIME_INFO), or None when a broker does not expose it.
* ``CpuSample`` / ``sample_cpu(broker_pids, client_pids, t_ns)``: the brokers' and the load
  generator's (driver workers and the mqbench parent) CPU seconds at one moment; the run takes one
  at every window edge of the measured phase. ``cpu_figures(first, last, msgs)`` turns two of them
  into the cell's figures: CPU microseconds per message of each side (``broker_cpu_us_per_msg``,
  ``client_cpu_us_per_msg``) and the share of the whole machine each used over that time
  (``*_cpu_machine_share``: CPU seconds / (wall seconds x ``os.cpu_count()``), 1.0 = every core
  busy). The broker side is None when the brokers are not ours (``--target``). With the brokers
  on other machines (Ray nodes) the broker share divides by those machines' CPUs instead
  (``broker_cpus``: the summed CPU count of the distinct nodes that host brokers), and the client
  share by this machine's CPUs plus those of the nodes that host its workers (``client_cpus``).
  The load generator is also split by role (``producer_pids`` / ``consumer_pids``, both parts of
  ``client_pids``): ``producer_cpu_us_per_msg`` and ``consumer_cpu_us_per_msg`` are each role's
  worker processes' CPU per acknowledged message (so they add up to the client figure minus the
  mqbench parent's share), and ``consumer_cpu_us_per_delivery`` the consumers' CPU per
  delivery (``consumed``: every group's deliveries, so a profile with three groups divides by
  about three times the messages). None when a worker of the role never reported its CPU or
  nothing was counted.
* The workers' CPU is reported by the workers themselves, on this machine and on Ray nodes alike
  (the parent cannot read another machine's ``/proc``): ``with_own_cpu(report, clock_ns)`` wraps a
  driver's report so that every ``ready``, ``progress`` and ``done`` document carries the worker
  process's ``cpu_seconds`` (``cpu_s``, the same definition) and the time it was read
  (``cpu_t_ns``, on the driver's clock: ``run.workers.driver_clock``). The parent's ``WorkerCpu``
  keeps each worker's readings and gives a role's CPU seconds at any instant of the run (a probe,
  a window edge), interpolated linearly between the two readings around it (every
  ``progress_ms``, 500 ms by default; after a worker's last reading, that reading). The parent
  samples only its own process through ``/proc`` (``client_s`` = the parent + the workers).
"""
from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_proc_stat(text: str) -> float:
    """CPU seconds (utime + stime) from the text of ``/proc/<pid>/stat``.

    The second field is the command name in parentheses and may itself hold spaces or ')', so the
    fields are counted from the last ')'. Raises ValueError for text that is not a stat line.
    """
    end = text.rfind(")")
    if end < 0:
        raise ValueError("no ')' closing the command name")
    fields = text[end + 1:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    if len(fields) < 13:
        raise ValueError(f"only {len(fields) + 2} fields")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                total += parse_proc_stat(handle.read())
        except (OSError, ValueError):
            continue
    return total


@dataclass(frozen=True)
class CpuSample:
    t_ns: int
    broker_s: float | None
    client_s: float
    producer_s: float | None = None   # the producer workers' part of client_s
    consumer_s: float | None = None   # the consumer workers' part of client_s


def sample_cpu(broker_pids: Iterable[int] | None, client_pids: Iterable[int], t_ns: int) -> CpuSample:
    """The brokers' (None: not ours) and ``client_pids``' CPU seconds now; the role split is
    ``WorkerCpu.split``'s."""
    return CpuSample(t_ns, None if broker_pids is None else cpu_seconds(broker_pids), cpu_seconds(client_pids))


CPU_REPORTED = ("ready", "progress", "done")   # the worker documents that carry the worker's CPU


def with_own_cpu(report: Callable[[dict], None], clock_ns: Callable[[], int]) -> Callable[[dict], None]:
    """``report``, adding this process's CPU seconds (``cpu_s``: ``cpu_seconds`` of its pid) and the
    time of that reading (``cpu_t_ns`` on ``clock_ns``) to every document in ``CPU_REPORTED``."""
    pid = os.getpid()

    def stamped(message: dict) -> None:
        if message.get("type") in CPU_REPORTED:
            message["cpu_s"] = cpu_seconds((pid,))
            message["cpu_t_ns"] = clock_ns()
        report(message)
    return stamped


class WorkerCpu:
    """The workers' own CPU readings (``with_own_cpu``), by worker; ``split`` gives each role's CPU
    seconds at an instant (module doc)."""

    def __init__(self) -> None:
        self._readings: dict[str, tuple[str, list[tuple[int, float]]]] = {}  # worker -> (role, [(t_ns, cpu_s)])

    def add_worker(self, worker: str, role: str) -> None:
        self._readings.setdefault(worker, (role, []))

    def observe(self, worker: str, role: str, message: dict) -> None:
        cpu_s, t_ns = message.get("cpu_s"), message.get("cpu_t_ns")
        if isinstance(cpu_s, (int, float)) and isinstance(t_ns, int):
            readings = self._readings.setdefault(worker, (role, []))[1]
            if not readings or t_ns >= readings[-1][0]:
                readings.append((t_ns, float(cpu_s)))

    def role_s(self, role: str, t_ns: int) -> float | None:
        """The role's workers' CPU seconds at ``t_ns``; 0.0 with no worker of the role, None when one
        of them has not reported yet."""
        total = 0.0
        for worker_role, readings in self._readings.values():
            if worker_role != role:
                continue
            at = cpu_at(readings, t_ns)
            if at is None:
                return None
            total += at
        return total

    def split(self, sample: CpuSample) -> CpuSample:
        """``sample`` with the workers' CPU at its instant: ``producer_s``, ``consumer_s``, and both
        added to ``client_s`` (which held the parent's own)."""
        producer, consumer = self.role_s("producer", sample.t_ns), self.role_s("consumer", sample.t_ns)
        return replace(sample, producer_s=producer, consumer_s=consumer,
                       client_s=sample.client_s + (producer or 0.0) + (consumer or 0.0))


def cpu_at(readings: list[tuple[int, float]], t_ns: int) -> float | None:
    """CPU seconds at ``t_ns`` from time-ordered ``(t_ns, cpu_s)`` readings: linear between the two
    around it, the last one after the last, None before the first (or with none)."""
    if not readings or t_ns < readings[0][0]:
        return None
    at = bisect_right(readings, t_ns, key=lambda r: r[0])
    if at == len(readings):
        return readings[-1][1]
    (t0, c0), (t1, c1) = readings[at - 1], readings[at]
    return c0 + (c1 - c0) * (t_ns - t0) / (t1 - t0)


def _used(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(0.0, b - a)


def cpu_figures(first: CpuSample, last: CpuSample, msgs: int, cpus: int | None = None,
                broker_cpus: int | None = None, consumed: int | None = None,
                client_cpus: int | None = None) -> dict:
    """The cell's CPU fields between two samples (module doc); None where not measurable.
    ``cpus``: this machine's CPU count (default ``os.cpu_count()``); ``broker_cpus``: the CPUs the
    brokers run on when that is not this machine (their nodes' summed count); ``client_cpus``: the
    same for the load generator (this machine's plus its workers' Ray nodes'); ``consumed``: the
    deliveries of every group over the same time (``consumer_cpu_us_per_delivery``)."""
    cpus = cpus or os.cpu_count() or 1
    wall_s = (last.t_ns - first.t_ns) / 1e9
    out = {}
    for side, a, b, side_cpus in (("broker", first.broker_s, last.broker_s, broker_cpus or cpus),
                                  ("client", first.client_s, last.client_s, client_cpus or cpus)):
        used = _used(a, b)
        out[f"{side}_cpu_us_per_msg"] = used * 1e6 / msgs if used is not None and msgs else None
        out[f"{side}_cpu_machine_share"] = used / (wall_s * side_cpus) if used is not None and wall_s > 0 else None
    producer, consumer = _used(first.producer_s, last.producer_s), _used(first.consumer_s, last.consumer_s)
    out["producer_cpu_us_per_msg"] = producer * 1e6 / msgs if producer is not None and msgs else None
    out["consumer_cpu_us_per_msg"] = consumer * 1e6 / msgs if consumer is not None and msgs else None
    out["consumer_cpu_us_per_delivery"] = consumer * 1e6 / consumed if consumer is not None and consumed else None
    return out


def allocated_bytes(directories: Iterable[str | os.PathLike]) -> int:
    total = 0
    for directory in directories:
        for root, _dirs, files in os.walk(directory):
            for name in files:
                try:
                    total += os.lstat(Path(root) / name).st_blocks * 512
                except OSError:
                    continue  # a file removed while we walk (a deleted segment)
    return total


async def replication_bytes(addrs: Iterable[str], timeout_s: float = 2.0, *, credentials=None) -> int | None:
    """Sum of ``raftBytesSent`` of the brokers at ``addrs``; None if any does not answer it."""
    from mqbench.admin.calls import query_runtime_info

    total = 0
    for addr in addrs:
        try:
            info = await query_runtime_info(addr, timeout_s, credentials=credentials)
            total += int(info["raftBytesSent"])
        except Exception:  # noqa: BLE001 - not exposed, not reachable: the figure is unknown
            return None
    return total
