"""What every benchmark shares: its schema name, this machine's limits measured in the same run,
CPU readings and percentiles.

Limits come from ``mqbench.limits`` (the code of ``mqbench limits``), with a short budget: a
benchmark needs the denominators of its own figures, not the full 30 s report.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Iterable

from mqbench.limits import machine_info, measure_disk, measure_loopback
from mqbench.output import document
from mqbench.run.probes import cpu_seconds

SCHEMA_VERSION = 1
LIMITS_BUDGET_S_DEFAULT = 4


def bench_document(what: str, **fields) -> dict:
    """The benchmark's JSON document: schema ``mqbench.bench-<what>/1``, tool version, machine, and
    ``native``: each compiled accelerator and whether this environment uses it (the processes a
    benchmark starts inherit it; ``MQBENCH_NATIVE=0`` is the pure-Python A/B)."""
    from mqbench import native

    return document(f"mqbench.bench-{what}/{SCHEMA_VERSION}", machine=machine_info(), native=native.report(),
                    **fields)


def measure_limits(directory: str | os.PathLike, budget_s: float, *, disk: bool = True,
                   loopback: bool = True) -> dict:
    """This machine's disk and/or loopback limits (``mqbench limits``' code) within ``budget_s``.

    The budget is split between the parts asked for; each part gets at least 0.5 s.
    """
    parts = int(disk) + int(loopback)
    share_ms = max(500, int(budget_s * 1000 / max(1, parts)))
    limits: dict = {}
    if disk:
        limits.update(measure_disk(Path(directory), share_ms))
    if loopback:
        limits.update(measure_loopback(share_ms))
    return limits


def limits_line(limits: dict) -> str:
    """One line naming the limits measured in this run, for the table's header."""
    parts = []
    if "disk_write_fdatasync_mb_per_s" in limits:
        parts.append(f"disk write+fdatasync {limits['disk_write_fdatasync_mb_per_s']:,.1f} MB/s, "
                     f"{limits['disk_fdatasync_per_s']:,.0f} fdatasync/s")
    if "loopback_small_frames_per_s" in limits:
        parts.append(f"loopback TCP {limits['loopback_small_frames_per_s']:,.0f} frames/s (100 B), "
                     f"{limits['loopback_mb_per_s']:,.0f} MB/s (64 KiB)")
    return "limits measured in this run: " + "; ".join(parts)


def ratio(value: float | None, limit: float | None) -> float | None:
    """``value / limit`` rounded for reading, or None when either is missing or the limit is 0."""
    if value is None or not limit:
        return None
    return round(value / limit, 4)


def processes_cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds of other processes (the brokers), as ``mqbench run`` reads them."""
    return cpu_seconds(pids)


def own_cpu_s() -> float:
    """User + system CPU seconds of this process, every thread (the load generator's own cost)."""
    return time.process_time()


def us_per_msg(cpu_s: float, messages: int) -> float | None:
    return round(cpu_s * 1e6 / messages, 1) if messages else None


def percentile(sorted_values: list, q: float):
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; None when empty."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def fmt(value, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def payload(body_bytes: int, seed: int) -> bytes:
    """``body_bytes`` of realistic order JSON (the ``orders`` body model, seeded)."""
    from mqbench.workloads.bodies import generate_bodies

    rng = random.Random(seed)
    out = bytearray()
    while len(out) < body_bytes:
        out += b"\n".join(generate_bodies("orders", 16, rng))
    return bytes(out[:body_bytes])


def drop_cache(root: str | os.PathLike) -> None:
    """Ask the kernel to forget the cached pages of every file under ``root`` (clean pages only),
    so the next read comes from the disk."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
